import { createHmac, randomBytes } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { fingerprint } from '../session/crypto.ts';
import { MemoryStore } from '../session/memoryStore.ts';
import { type Store, StoreUnavailableError } from '../session/store.ts';

/**
 * Login rate limits per client (DESIGN §10): `burst` attempts at once, then one every `interval`,
 * counted in the shared store so every replica sees the same budget.
 *
 * A token bucket built from SET NX alone: time is cut into slots of one interval; an allowed
 * attempt claims one slot among the `burst` slots that start at the current one. Claims are atomic
 * (SET NX), so concurrent attempts on different replicas never share a slot and no race can widen
 * the budget. Claimed slots always form a prefix of that window, which lets a denial cost one read
 * and an allowance a short binary search. When the store is unreachable, the same algorithm runs
 * on an in-process store: limits then hold per replica instead of across them.
 *
 * The store never sees a client address: the key is an HMAC of the client's bucket (its IPv4
 * address or IPv6 /64) under a key derived from the cookie secret, so every replica counts in
 * the same bucket while a copy of Redis alone names no client.
 */

export interface RateLimitSettings {
  /** Attempts allowed at once; 0 turns the limit off. */
  readonly burst: number;
  /** One more attempt becomes available every this many ms. */
  readonly intervalMs: number;
}

export type RateDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterSeconds: number };

export type LimitScope = 'start' | 'callback';

const ALLOWED: RateDecision = Object.freeze({ allowed: true });

export class LoginRateLimiter {
  readonly #store: Store;
  readonly #fallback: Store;
  readonly #settings: RateLimitSettings;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #keyKey: Buffer;
  #lastWarned = Number.NEGATIVE_INFINITY;
  #lastSharedWarning = Number.NEGATIVE_INFINITY;

  constructor(options: {
    store: Store;
    settings: RateLimitSettings;
    clock: Clock;
    log: Logger;
    /** In-process store used while `store` is unreachable (default: a bounded memory store). */
    fallback?: Store;
    /**
     * The secret the store keys are derived from; every replica must be given the same one (the
     * cookie secret). Without one, a random key: limits then count per replica.
     */
    keySecret?: string;
  }) {
    this.#store = options.store;
    this.#settings = options.settings;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#fallback = options.fallback ?? new MemoryStore({ clock: options.clock, maxEntries: 200_000 });
    this.#keyKey = createHmac('sha256', options.keySecret ?? randomBytes(32))
      .update('dex-forward-auth rate-limit keys')
      .digest();
  }

  /** The store key of a client's budget for `scope`: no address in it, only a keyed hash. */
  storeKey(scope: LimitScope, clientIp: string): string {
    const bucket = createHmac('sha256', this.#keyKey).update(clientKey(clientIp)).digest('base64url');
    return `rl:${scope}:${bucket.slice(0, 32)}`;
  }

  get enabled(): boolean {
    return this.#settings.burst > 0;
  }

  /** Takes one attempt from the client's budget for `scope`. */
  async take(scope: LimitScope, clientIp: string): Promise<RateDecision> {
    if (!this.enabled) return ALLOWED;
    const key = this.storeKey(scope, clientIp);
    try {
      return await claimSlot(this.#store, key, this.#clock.now(), this.#settings);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      const now = this.#clock.now();
      if (now - this.#lastWarned > 30_000) {
        this.#lastWarned = now;
        this.#log.warn('session store unavailable: login rate limits are counted per replica for now');
      }
      return claimSlot(this.#fallback, key, now, this.#settings);
    }
  }

  /**
   * Told about a refused attempt: the first time in ten minutes that the refused address is an
   * internal one (private, CGNAT, loopback, ULA), a warning that it may be a proxy or a node's
   * SNAT, in which case every user shares its budget (README: trustForwardHeader: true with the
   * entry point's forwardedHeaders.trustedIPs).
   */
  noteRefused(clientIp: string): void {
    const now = this.#clock.now();
    if (now - this.#lastSharedWarning < 600_000 || !isInternalAddress(clientIp)) return;
    this.#lastSharedWarning = now;
    this.#log.warn(
      { clientIp },
      "login attempts all come from one address: the login rate limit was reached by an internal address, likely a load balancer, a node (SNAT) or a proxy, so every user behind it shares one budget; let the proxy pass on the client address (Traefik: trustForwardHeader: true and the entry point's forwardedHeaders.trustedIPs) and list it in TRUSTED_PROXIES",
    );
  }

  async close(): Promise<void> {
    await this.#fallback.close();
  }
}

/** Claims the first free slot of the client's window, or says how long until one frees up. */
async function claimSlot(
  store: Store,
  key: string,
  now: number,
  { burst, intervalMs }: RateLimitSettings,
): Promise<RateDecision> {
  const first = Math.floor(now / intervalMs);
  const last = first + burst - 1;
  const slot = (k: number) => `${key}:${k}`;
  const denied = (): RateDecision => ({
    allowed: false,
    retryAfterSeconds: Math.max(1, Math.ceil(((first + 1) * intervalMs - now) / 1000)),
  });

  // Claimed slots form a prefix of [first, last]: when the last is taken, all are.
  if ((await store.get(slot(last))) !== null) return denied();
  let lo = first;
  let hi = last;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((await store.get(slot(mid))) !== null) lo = mid + 1;
    else hi = mid;
  }
  // Another attempt may claim the same slot meanwhile: move up until one is ours.
  for (let k = lo; k <= last; k++) {
    const ttl = (k + 2) * intervalMs - now;
    if (await store.setIfAbsent(slot(k), '1', ttl)) return ALLOWED;
  }
  return denied();
}

const INTERNAL = new BlockList();
for (const [net, prefix] of [
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
] as const) {
  INTERNAL.addSubnet(net, prefix, 'ipv4');
}
INTERNAL.addSubnet('fc00::', 7, 'ipv6');
INTERNAL.addSubnet('::1', 128, 'ipv6');

/** An address of a private network, CGNAT or loopback: where proxies and nodes are, not users. */
export function isInternalAddress(ip: string): boolean {
  const address = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
  const family = isIP(address);
  return family !== 0 && INTERNAL.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The bucket a client counts against: its IPv4 address, or its IPv6 /64 (one subscriber's
 * network: anyone holding one has 2^64 addresses to rotate through).
 */
export function clientKey(ip: string): string {
  let address = ip;
  if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) address = address.slice(7);
  const family = isIP(address);
  if (family === 4) return address;
  if (family === 6) return `${ipv6Prefix64(address)}::/64`;
  return `x${fingerprint(ip).slice(0, 22)}`;
}

function ipv6Prefix64(address: string): string {
  const bare = address.split('%', 1)[0] as string;
  const double = bare.indexOf('::');
  const groups = (text: string): string[] => (text === '' ? [] : text.split(':'));
  const width = (parts: string[]): number => parts.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  let all: string[];
  if (double === -1) {
    all = groups(bare);
  } else {
    const head = groups(bare.slice(0, double));
    const tail = groups(bare.slice(double + 2));
    all = [...head, ...Array<string>(Math.max(0, 8 - width(head) - width(tail))).fill('0'), ...tail];
  }
  return all
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':');
}
