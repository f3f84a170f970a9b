import type { Logger } from '../log.ts';
import type { OidcProvider } from '../oidc/provider.ts';
import type { Endings, ProviderAction } from './endings.ts';
import type { RefreshCoordinator } from './refresh.ts';
import type { UserStore } from './users.ts';

/**
 * Ending sessions of one user (sign-out, idle, "sign out everywhere", the admin, back-channel
 * logout), and what that asks of the provider now that the user's sessions share one token chain
 * (issue 16 item 1, squared with issue 11 item 6's "sign-out spends the refresh token"):
 *
 * - the user's **last** session ends (or all of them at once): the chain's refresh token is
 *   revoked (RFC 7009) or spent, and the chain deleted — exactly as a sign-out did before;
 * - **one of several** ends: the chain is moved on — its refresh token spent for a new one the
 *   other sessions go on with (refresh.ts `rotate`) — so the signed-out cookie's token is spent
 *   too, while the others stay signed in. (With a provider that does not rotate refresh tokens the
 *   token cannot be spent without ending the others: the tombstones hold, and the log says so.)
 *
 * Either way the ended sessions are tombstoned, announced and taken out of the user's list.
 */

export interface EndedSession {
  /** The session's reference (store lookup). */
  readonly ref: string;
  /** Its absolute end: tombstones are kept until then. */
  readonly until: number;
  /** The provider session it belongs to (`sid`), to take it out of that index. */
  readonly providerSid?: string | undefined;
}

export interface UserEndingsOptions {
  readonly endings: Endings;
  readonly users: UserStore;
  readonly refresher: Pick<RefreshCoordinator, 'rotate'>;
  readonly oidc: Pick<OidcProvider, 'revokeRefreshToken'>;
  readonly log: Logger;
}

export class UserEndings {
  readonly #o: UserEndingsOptions;

  constructor(options: UserEndingsOptions) {
    this.#o = options;
  }

  /**
   * Ends `sessions` of the user `sub` (undefined: a session from before the chain, alone).
   * `everywhere`: every session of the user is meant (revoke, whatever is left). `newestRt`: the
   * newest refresh token the ending session's cookie knew (revoked when the chain cannot be read).
   */
  async end(
    sub: string | undefined,
    sessions: readonly EndedSession[],
    options: { everywhere?: boolean; newestRt?: string } = {},
  ): Promise<void> {
    if (sessions.length === 0) return;
    const last = options.everywhere === true || (await this.#noneLeft(sub, sessions));
    const action: ProviderAction =
      sub !== undefined && !last
        ? () => this.#o.refresher.rotate(sub)
        : this.#revokeChain(sub, options.newestRt);
    for (const [i, session] of sessions.entries()) {
      // The provider is asked once, with the last of them (and retried with it).
      await this.#o.endings.end({
        lookup: session.ref,
        until: session.until,
        action: i === sessions.length - 1 ? action : undefined,
      });
      if (sub !== undefined) {
        await this.#o.users.removeSession(sub, session.ref, session.providerSid).catch(() => undefined);
      }
    }
  }

  /**
   * Ends sessions a login pushed past MAX_SESSIONS_PER_USER: tombstoned, announced and unlisted,
   * nothing asked of the provider (the login's refresh token already replaced theirs as the chain).
   */
  async trim(sub: string, sessions: readonly EndedSession[]): Promise<void> {
    for (const session of sessions) {
      await this.#o.endings.end({ lookup: session.ref, until: session.until, action: undefined });
      await this.#o.users.removeSession(sub, session.ref, session.providerSid).catch(() => undefined);
    }
  }

  /** Whether the user has no session left besides `ending` (unknown, as when Redis is down: none). */
  async #noneLeft(sub: string | undefined, ending: readonly EndedSession[]): Promise<boolean> {
    if (sub === undefined) return true;
    const refs = new Set(ending.map((s) => s.ref));
    try {
      return (await this.#o.users.sessions(sub)).every((s) => refs.has(s.ref));
    } catch {
      // The list cannot be read: a signed-out cookie must never be revived, so the token goes.
      return true;
    }
  }

  /**
   * Revokes the chain's refresh token (else `fallback`) and deletes the chain — unless a new login
   * replaced it meanwhile. The token is read once: a retry never revokes a later login's.
   */
  #revokeChain(sub: string | undefined, fallback: string | undefined): ProviderAction {
    let target: { rt: string; blob: string | undefined } | undefined;
    return async () => {
      if (target === undefined) {
        const stored = sub ? await this.#o.users.chain(sub).catch(() => undefined) : undefined;
        const rt = stored && !stored.chain.terminal ? stored.chain.rt : fallback;
        if (!rt) return 'no refresh token';
        target = { rt, blob: stored?.blob };
      }
      const outcome = await this.#o.oidc.revokeRefreshToken(target.rt);
      if (sub !== undefined && target.blob !== undefined) {
        await this.#o.users.deleteChainIf(sub, target.blob).catch(() => undefined);
      }
      return outcome;
    };
  }
}
