import type { ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import { CLAIMED, type TokenBody } from './dexShape.ts';
import type { MapStore } from './storage.ts';
import type { DexClient } from './types.ts';
import { sendJson } from './wire.ts';

/**
 * Dex's refresh tokens on top of oidc-provider (spec A6, A9): rotation with a reuse window
 * (`refreshMode: 'dex'`), Dex's error codes for refusals, and "one refresh token per user and
 * client" (a new login kills the previous grant).
 */

/** dex refreshMode: Dex's RefreshToken row, keyed by the oidc-provider grant. */
interface Family {
  grantId: string;
  clientId: string;
  accountId: string;
  cur: string;
  obs: string | undefined;
  /** ms on the reuse clock */
  lastUsed: number;
  last: TokenBody;
}

export interface ShimHost {
  provider(): Provider;
  readonly store: MapStore;
  /** Now on the reuse clock (advanceReuseClock moves it). */
  reuseNow(): number;
  /** A fresh ID token from a stored one (Dex mints from stored claims). */
  reissue(idToken: string): Promise<string>;
  userExists(sub: string): boolean;
}

export interface ShimOptions {
  readonly mode: 'strict' | 'dex';
  readonly reuseInterval: number;
  readonly onePerUserClient: boolean;
  readonly idTokenTtl: number;
}

export interface IssuedTokens {
  readonly grantType: unknown;
  readonly clientId: string;
  readonly grantId: string;
  readonly accountId: string;
  readonly presented: unknown;
  readonly body: TokenBody;
}

export class DexRefreshShim {
  readonly #host: ShimHost;
  readonly #options: ShimOptions;
  /** `${accountId}\n${clientId}` -> latest grant id with a refresh token */
  readonly #latestGrant = new Map<string, string>();
  readonly #families = new Map<string, Family>();
  readonly #familyOfToken = new Map<string, string>();
  readonly #locks = new Map<string, Promise<void>>();

  constructor(host: ShimHost, options: ShimOptions) {
    this.#host = host;
    this.#options = options;
  }

  get dexMode(): boolean {
    return this.#options.mode === 'dex';
  }

  /** Dex's error codes for oidc-provider's refusals of a refresh (invalid_grant → invalid_request). */
  dexRefusal(error: string | undefined): { error: string; error_description: string } | undefined {
    if (!this.dexMode) return undefined;
    if (error === 'invalid_grant') return { error: 'invalid_request', error_description: CLAIMED };
    if (error === 'invalid_scope') {
      return {
        error: 'invalid_request',
        error_description: 'Requested scopes contain unauthorized scope(s).',
      };
    }
    return undefined;
  }

  /** Grant bookkeeping after oidc-provider issued tokens. */
  async issued(t: IssuedTokens): Promise<void> {
    if (t.grantType === 'authorization_code' && t.body.refresh_token) {
      await this.#newLogin(t, t.body.refresh_token);
    } else if (t.grantType === 'refresh_token' && this.dexMode && t.body.refresh_token) {
      const fam = this.#families.get(t.grantId);
      if (fam && typeof t.presented === 'string' && t.body.refresh_token !== fam.cur) {
        if (fam.obs) this.#familyOfToken.delete(fam.obs);
        fam.obs = t.presented;
        fam.cur = t.body.refresh_token;
        fam.lastUsed = this.#host.reuseNow();
        this.#familyOfToken.set(fam.cur, t.grantId);
      }
      if (fam) fam.last = t.body;
    }
  }

  async #newLogin(t: IssuedTokens, refreshToken: string): Promise<void> {
    const key = `${t.accountId}\n${t.clientId}`;
    const previous = this.#latestGrant.get(key);
    if (this.#options.onePerUserClient && previous && previous !== t.grantId) await this.#killGrant(previous);
    this.#latestGrant.set(key, t.grantId);
    if (!this.dexMode) return;
    this.#families.set(t.grantId, {
      grantId: t.grantId,
      clientId: t.clientId,
      accountId: t.accountId,
      cur: refreshToken,
      obs: undefined,
      lastUsed: this.#host.reuseNow(),
      last: t.body,
    });
    this.#familyOfToken.set(refreshToken, t.grantId);
  }

  async #killGrant(grantId: string): Promise<void> {
    const grant = await this.#host.provider().Grant.find(grantId);
    await grant?.destroy();
    this.#host.store.revokeGrant(grantId);
    const fam = this.#families.get(grantId);
    if (fam) {
      this.#familyOfToken.delete(fam.cur);
      if (fam.obs) this.#familyOfToken.delete(fam.obs);
      this.#families.delete(grantId);
    }
  }

  async #lock(key: string): Promise<() => void> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chained = previous.then(() => mine);
    this.#locks.set(key, chained);
    await previous;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      if (this.#locks.get(key) === chained) this.#locks.delete(key);
    };
  }

  /**
   * Dex's refresh algorithm (getRefreshTokenFromStorage + updateRefreshToken), on top of oidc-provider.
   * Returns true when the response was sent here; false to let oidc-provider rotate the token.
   */
  async refresh(form: URLSearchParams, client: DexClient, res: ServerResponse): Promise<boolean> {
    const presented = form.get('refresh_token');
    if (!presented) {
      sendJson(res, 400, {
        error: 'invalid_request',
        error_description: 'No refresh token is found in request.',
      });
      return true;
    }
    const grantId = this.#familyOfToken.get(presented);
    if (!grantId) {
      sendJson(res, 400, { error: 'invalid_request', error_description: CLAIMED });
      return true;
    }
    const release = await this.#lock(grantId);
    res.once('close', release);
    const refusal = this.#refusal(this.#families.get(grantId), presented, client);
    if (refusal) {
      release();
      sendJson(res, refusal.status, refusal.body);
      return true;
    }
    const fam = this.#families.get(grantId) as Family;
    if (this.#withinReuseWindow(fam)) {
      // Previous token within the window gets the current one; the current one comes back unchanged.
      const body: TokenBody = { ...fam.last, refresh_token: fam.cur, expires_in: this.#options.idTokenTtl };
      if (fam.last.id_token) body.id_token = await this.#host.reissue(fam.last.id_token);
      release();
      sendJson(res, 200, body);
      return true;
    }
    return false;
  }

  #withinReuseWindow(fam: Family): boolean {
    const interval = this.#options.reuseInterval;
    return interval > 0 && this.#host.reuseNow() < fam.lastUsed + interval * 1000;
  }

  #refusal(fam: Family | undefined, presented: string, client: DexClient) {
    if (!fam) return { status: 400, body: { error: 'invalid_request', error_description: CLAIMED } };
    if (fam.clientId !== client.clientId) {
      return { status: 400, body: { error: 'invalid_grant', error_description: CLAIMED } };
    }
    const within = this.#withinReuseWindow(fam);
    if (presented !== fam.cur && !(within && fam.obs !== undefined && presented === fam.obs)) {
      return { status: 400, body: { error: 'invalid_request', error_description: CLAIMED } };
    }
    if (!within && !this.#host.userExists(fam.accountId)) {
      // The connector's Refresh fails ("user not found") -> Dex answers 500 {"error":"invalid_request"}.
      return { status: 500, body: { error: 'invalid_request' } };
    }
    return undefined;
  }
}
