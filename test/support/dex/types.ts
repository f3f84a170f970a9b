import type { CryptoKey, JWK, KeyObject } from 'jose';
import type Provider from 'oidc-provider';
import type { BackchannelAnswer } from './backchannel.ts';
import type { StandInProfile } from './profiles.ts';
import type { DexUser } from './users.ts';

/** The stand-in's public shape: what tests and the demo configure and observe. */

export interface DexClient {
  clientId: string;
  /** May be empty for a client that authenticates with private_key_jwt only. */
  clientSecret: string;
  redirectUris: string[];
  /** Public keys for private_key_jwt assertions. */
  jwks?: JWK[];
  /** Where RP-initiated logout may send the browser back to (profiles with an end_session_endpoint). */
  postLogoutRedirectUris?: string[];
}

export interface DexOptions {
  /** Default: a free port. */
  port?: number;
  /** Default '/' -> issuer `http://127.0.0.1:<port>/`; '/dex' -> `http://127.0.0.1:<port>/dex`. */
  issuerPath?: string;
  /** Host written into the issuer (default '127.0.0.1'); the listener is always on 127.0.0.1. */
  host?: string;
  clients: DexClient[];
  /** Default: DEMO_USERS (copied). The array stays live: removing a user simulates a deleted account. */
  users?: DexUser[];
  /** ID token (and access token) lifetime in seconds, default 86400. */
  idTokenTtl?: number;
  /** List the users (and their password) under the login form, as the demo does. Default false. */
  showUsers?: boolean;
  /** Default 'strict'. */
  refreshMode?: 'strict' | 'dex';
  /** Seconds, default 0 (Dex's default: no reuse). Only used in 'dex' mode. */
  reuseInterval?: number;
  /** Default true (Dex): a new code exchange for the same user+client kills the previous grant. */
  oneRefreshTokenPerUserAndClient?: boolean;
  /**
   * Default false (released Dex has none): offer RFC 7009 token revocation (`revocation_endpoint`
   * in discovery, at /token/revocation); revoking a refresh token revokes its whole grant.
   */
  revocation?: boolean;
  /** How far the stand-in departs from Dex (profiles.ts); default: Dex itself. */
  profile?: StandInProfile;
}

export interface DexCounts {
  /** refresh_token grant requests received at /token, successful or not. */
  refreshGrants: number;
  /** authorization_code grant requests received at /token, successful or not. */
  codeGrants: number;
  /** /token responses with a status >= 400. */
  tokenErrors: number;
  /** Authorization requests (GET /auth), silent ones (prompt=none) included. */
  authorizations: number;
  /** RP-initiated logouts that the end_session_endpoint accepted. */
  endSessions: number;
  /** Requests to the revocation endpoint (only with `revocation: true`). */
  revocations: number;
}

export interface MintOptions {
  /** Default: the current signing key's kid. */
  kid?: string;
  /** Default 'RS256'. For another alg without `key`, a throw-away key of that alg is generated. */
  alg?: string;
  /** Default: the current signing key. */
  key?: CryptoKey | KeyObject | JWK | Uint8Array;
  /** Seconds from now for `exp`, default idTokenTtl. Ignored when `claims.exp` is given. */
  expiresIn?: number;
}

export interface Dex {
  readonly issuer: string;
  readonly port: number;
  readonly jwksUri: string;
  readonly users: DexUser[];
  readonly counts: DexCounts;
  readonly profile: StandInProfile;
  /** Private JWK of the current signing key (changes on rotateKeys()). */
  readonly privateJwk: JWK;
  /** kid of the current signing key. */
  readonly kid: string;
  /** The oidc-provider instance currently serving requests (replaced by rotateKeys()). */
  readonly provider: Provider;
  /**
   * Sign arbitrary claims. Defaults: iss = issuer, aud = first client id, iat = now,
   * exp = now + expiresIn. A claim given as `undefined` is left out (e.g. `{ exp: undefined }`).
   */
  mintIdToken(claims: Record<string, unknown>, opts?: MintOptions): Promise<string>;
  /**
   * Back-Channel Logout: signs a logout token (iss, aud, iat, a fresh jti, the logout event, 2 min
   * to live; `claims` add or replace, `undefined` leaves one out) with the stand-in's keys and POSTs
   * it to `uri`, as the provider's back channel does. `token` is what was sent (for replays).
   */
  sendBackchannelLogout(
    uri: string,
    claims: Record<string, unknown>,
    opts?: MintOptions,
  ): Promise<BackchannelAnswer & { readonly token: string }>;
  /** When down, every request gets its TCP connection destroyed. */
  setDown(down: boolean): void;
  /** Close the listener (and all connections); state survives. */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  /** The next n refresh grants answer with `status` (500 -> {"error":"invalid_request"} like Dex). */
  failNextRefreshes(n: number, status: number): void;
  /** The next refresh grant's ID token names `sub` instead (a provider that mixes users up, §12.2). */
  issueSubOnNextRefresh(sub: string): void;
  /** Dex-style rotation: a new key signs at once; the old ones stay published. */
  rotateKeys(): Promise<void>;
  /** Moves the clock of the dex-mode reuse window forward (tests of `reuseInterval` without sleeping). */
  advanceReuseClock(seconds: number): void;
  /** The Dex-shaped `sub` of a user. */
  subjectOf(user: Pick<DexUser, 'userId'>): string;
  close(): Promise<void>;
}
