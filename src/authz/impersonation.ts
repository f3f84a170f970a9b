import { readFile } from 'node:fs/promises';
import { rawHeaderBytes } from '../http/headerValues.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import type { Authorizer, Decision } from './policy.ts';

/**
 * The pod's service-account token for impersonation mode (UPSTREAM_AUTH=impersonate). Kubernetes
 * rotates projected tokens (the kubelet rewrites the file well before expiry), so the file is
 * re-read every minute in the background; the hot path only reads the cached value.
 */
export class ServiceAccountToken {
  readonly #path: string;
  readonly #log: Logger;
  #token: string;
  #timer: NodeJS.Timeout;

  /** `initial` is the file's content as read at start-up (config validation read it already). */
  constructor(path: string, initial: string, log: Logger, refreshMs = 60_000) {
    this.#path = path;
    this.#log = log;
    this.#token = initial.trim();
    this.#timer = setInterval(() => void this.refresh(), refreshMs);
    this.#timer.unref();
  }

  get current(): string {
    return this.#token;
  }

  async refresh(): Promise<void> {
    try {
      const next = (await readFile(this.#path, 'utf8')).trim();
      if (next !== '' && next !== this.#token) {
        this.#token = next;
        this.#log.info({ path: this.#path }, 'service-account token re-read');
      }
    } catch (error) {
      this.#log.warn(
        { path: this.#path, code: (error as NodeJS.ErrnoException).code },
        'cannot re-read the service-account token; keeping the previous one',
      );
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/**
 * Names Kubernetes keeps for itself: `system:masters` is cluster-admin, `system:serviceaccount:…`
 * a workload, `system:node:…` a kubelet. In impersonation mode the names sent come from the
 * identity provider, so one of these must never be impersonated (README "Impersonation").
 */
export const SYSTEM_PREFIX = 'system:';

/** Why the API server must not be asked to impersonate this identity, or undefined when it may. */
export function impersonationRefusal(identity: Identity): Extract<Decision, { allowed: false }> | undefined {
  const refuse = (reason: string) =>
    ({ allowed: false, code: 'forbidden', source: 'baseline', reason }) as const;
  if (identity.user.startsWith(SYSTEM_PREFIX)) {
    return refuse(
      'Your user name starts with "system:", which Kubernetes reserves for its own identities; it cannot be passed to the cluster.',
    );
  }
  const systemGroup = identity.groups.find((g) => g.startsWith(SYSTEM_PREFIX));
  if (systemGroup !== undefined) {
    return refuse(
      `Your identity provider lists the group "${systemGroup}"; names starting with "system:" are reserved by Kubernetes and cannot be passed to the cluster.`,
    );
  }
  if (identity.user !== '' && rawHeaderBytes(identity.user) === undefined) {
    return refuse('Your user name holds control characters and cannot be passed to the cluster.');
  }
  return undefined;
}

/**
 * Impersonation mode: the policy's decision, after refusing identities that must not be
 * impersonated (a 403 naming the reason, and one log line per identity).
 */
export function guardImpersonation(inner: Authorizer, log: Logger): Authorizer {
  const verdicts = new WeakMap<Identity, Decision | null>();
  const refusalOf = (identity: Identity): Decision | null => {
    let verdict = verdicts.get(identity);
    if (verdict === undefined) {
      verdict = impersonationRefusal(identity) ?? null;
      if (verdict)
        log.warn({ user: identity.user, sub: identity.sub }, `impersonation refused: ${verdict.reason}`);
      verdicts.set(identity, verdict);
    }
    return verdict;
  };
  return {
    decide: (identity, request) => refusalOf(identity) ?? inner.decide(identity, request),
    ...(inner.status ? { status: () => inner.status!() } : {}),
    ...(inner.close ? { close: () => inner.close!() } : {}),
  };
}
