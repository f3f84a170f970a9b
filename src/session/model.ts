import type { Identity } from '../identity/identity.ts';
import type { SessionKeys } from './crypto.ts';

/**
 * What a session is made of (DESIGN §5): the sealed cookie the browser holds, the record the store
 * holds, and what resolving a cookie can come to.
 */

export interface SessionCookieData {
  readonly v: 1;
  readonly sid: string;
  readonly rt: string;
  /** Login time, ms. */
  readonly iat: number;
  /** Absolute session end, ms. */
  readonly exp: number;
  /** Generation: +1 at every refresh-token rotation, so older and newer cookies can be told apart. */
  readonly g?: number;
  /** When this cookie's refresh token came (login or rotation), ms: starts the rotation grace. */
  readonly r?: number;
  /** The host a host-only session belongs to (absent with COOKIE_DOMAIN, and in older cookies). */
  readonly h?: string;
  /** The user (`sub` of the login's ID token): finds the user's token chain when the record is lost. */
  readonly u?: string;
}

export interface SessionRecord {
  readonly idToken: string;
  /** ID token expiry, ms. */
  readonly tokenExp: number;
  /** ID token issue time, ms. */
  readonly tokenIat: number;
  readonly identity: Identity;
  /** The session's current sealed cookie and the hash of its refresh token. */
  readonly cookie: string;
  readonly rtHash: string;
  /** The generation of that cookie. */
  readonly gen: number;
  /** When that cookie was minted, ms (older cookies are adopted only within the grace after it). */
  readonly rotatedAt?: number;
  /**
   * No renewal possible — no refresh token, or the provider re-issues no ID token on refresh
   * (OpenID Connect Core §12.2): the session ends cleanly when this ID token expires.
   */
  readonly final?: boolean;
  /** The user (`sub`); absent in records from before the token chain. */
  readonly u?: string;
  /** When the user's token chain was in the state this record reflects, ms (users.ts `at`). */
  readonly ca?: number;
}

export type Resolution =
  | {
      readonly kind: 'valid';
      /** The session's reference (its store lookup): what end() takes, how a list marks this one. */
      readonly ref: string;
      readonly record: SessionRecord;
      /** A sealed cookie value to send (rotation, adoption of the current cookie, re-seal). */
      readonly setCookie?: string;
      /** Session end, ms (for the cookie's Max-Age). */
      readonly sessionEnd: number;
      readonly degraded: boolean;
      readonly refreshed: boolean;
      /** The host the session is bound to (host-only cookies), if any. */
      readonly host?: string;
    }
  | { readonly kind: 'none'; readonly reason: NoSessionReason };

export type NoSessionReason =
  | 'invalid'
  | 'expired'
  | 'signed_out'
  | 'refresh_refused'
  /** A host-only session's cookie presented on another host. */
  | 'other_host'
  /** A cookie older than the session's current one, past the rotation grace. */
  | 'stale'
  /** Unused for SESSION_IDLE_TIMEOUT. */
  | 'idle'
  /** A session nothing could renew reached its ID token's expiry (a silent login may follow). */
  | 'id_token_expired';

const none = (reason: NoSessionReason): Resolution => Object.freeze({ kind: 'none', reason });
export const NONE = {
  invalid: none('invalid'),
  expired: none('expired'),
  signedOut: none('signed_out'),
  refreshRefused: none('refresh_refused'),
  otherHost: none('other_host'),
  stale: none('stale'),
  idle: none('idle'),
  idTokenExpired: none('id_token_expired'),
};

export type Valid = Extract<Resolution, { kind: 'valid' }>;

/** What the store (or, while it is down, this replica) holds for a session. */
export interface Loaded {
  readonly record: SessionRecord | undefined;
  /** Store up but the record gone (flushed, restarted empty): what this replica last knew. */
  readonly fallback: SessionRecord | undefined;
  readonly storeDown: boolean;
}

export interface Unsealed {
  readonly value: string;
  readonly data: SessionCookieData;
  readonly keys: SessionKeys;
  readonly rtHash: string;
}

/**
 * Whether a record's ID token is due for refresh: REFRESH_SKEW before it expires, never more than
 * half its lifetime (or short-lived tokens would refresh on every request); a final record only
 * at its expiry.
 */
export function needsRefresh(record: SessionRecord, now: number, skewMs: number): boolean {
  if (record.final) return record.tokenExp <= now;
  const lifetime = Math.max(0, record.tokenExp - record.tokenIat);
  return record.tokenExp - Math.min(skewMs, lifetime / 2) <= now;
}

/** True when the record holds a newer cookie (a later rotation) than the one presented. */
export function isNewer(record: SessionRecord, presented: Unsealed): boolean {
  return record.rtHash !== presented.rtHash && (record.gen ?? 0) > (presented.data.g ?? 0);
}
