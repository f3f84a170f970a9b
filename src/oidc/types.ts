import type { JWTPayload } from 'jose';
import type { LogoutToken } from './logoutToken.ts';

/** What the rest of the service sees of the identity provider: plain values, no library types. */

export interface IdClaims extends JWTPayload {
  readonly sub: string;
  readonly exp: number;
  readonly email?: string;
  readonly email_verified?: boolean;
  readonly name?: string;
  readonly preferred_username?: string;
  readonly nonce?: string;
  readonly [claim: string]: unknown;
}

export interface TokenResult {
  readonly idToken: string;
  /** Absent when the provider issued none (no offline_access) — Dex may also return the same one. */
  readonly refreshToken: string | undefined;
  readonly claims: IdClaims;
}

/**
 * A refresh answered without an ID token (OpenID Connect Core §12.2 allows it): only the refresh
 * token to keep — the rotated one, or the one presented when none came back.
 */
export interface RefreshWithoutIdToken {
  readonly idToken: undefined;
  readonly refreshToken: string;
  readonly claims: undefined;
}

export type RefreshResult = TokenResult | RefreshWithoutIdToken;

export interface AuthorizationRequest {
  readonly redirectUri: string;
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
  /** `prompt=none`: a silent login that succeeds only while the provider still has a session. */
  readonly silent?: boolean;
}

export interface BearerVerifyOptions {
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
}

export type TokenAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

/** What discovery says about the provider, in the terms the service acts on. */
export interface ProviderProfile {
  /** Dex, recognised by its endpoint layout (see profile.ts); Dex-specific hints only then. */
  readonly isDex: boolean;
  /** "Dex" or "the identity provider", for pages, logs and doctor. */
  readonly name: string;
  /** Whether authorization requests carry PKCE S256 (unless discovery lists methods without it). */
  readonly pkce: boolean;
  /** Whether discovery lists code_challenge_methods_supported at all. */
  readonly pkceAdvertised: boolean;
  /** `prompt=none` may be tried (unless prompt_values_supported leaves it out). */
  readonly promptNone: boolean;
  readonly endSessionEndpoint: string | undefined;
  readonly tokenAuthMethod: TokenAuthMethod;
  /** Configured scopes the provider does not list in scopes_supported (still sent). */
  readonly unlistedScopes: readonly string[];
}

/** The last round trip to the provider: what /readyz reports. */
export interface ProviderCall {
  readonly operation: string;
  /** ok: 2xx/3xx; refused: 4xx; error: 5xx, network error or timeout. */
  readonly result: 'ok' | 'refused' | 'error';
  /** ms since the epoch. */
  readonly at: number;
}

export interface EndSessionRequest {
  /** The session's ID token, sent as id_token_hint (RP-Initiated Logout 1.0 §2). */
  readonly idTokenHint: string | undefined;
  /** Where the provider sends the browser afterwards (must be registered there). */
  readonly postLogoutRedirectUri: string | undefined;
}

export interface OidcProvider {
  readonly issuer: string;
  /** 'ready' while the last call to the provider got an answer; 'unavailable' before discovery and after a failed call. */
  status(): 'ready' | 'unavailable';
  /** The last round trip to the provider, if any. */
  lastCall(): ProviderCall | undefined;
  /** What discovery found; undefined until it succeeded. */
  profile(): ProviderProfile | undefined;
  /**
   * Whether the provider answers right now (its discovery document, cached for a few seconds).
   * Checked before sending a browser to log in, so a down provider gets a clear 503 page instead
   * of a redirect into the void.
   */
  reachable(): Promise<boolean>;
  authorizationUrl(request: AuthorizationRequest): Promise<string>;
  exchangeCode(callbackUrl: URL, request: AuthorizationRequest): Promise<TokenResult>;
  /**
   * A refresh grant. Token-endpoint calls take turns (at most MAX_CONCURRENT_TOKEN_CALLS at once
   * per replica); an `impatient` one — its session can go on with the current token — waits at
   * most the call timeout for its turn, then fails as a timed-out call does.
   */
  refresh(refreshToken: string, options?: { readonly impatient?: boolean }): Promise<RefreshResult>;
  /**
   * Ends a refresh token's usefulness (sign-out): RFC 7009 revocation where discovery offers it,
   * else the token is spent with a refresh grant whose answer is dropped (see revoke.ts).
   * 'refused': the provider no longer took it. Throws RefreshError 'transient' when unreachable.
   */
  revokeRefreshToken(refreshToken: string): Promise<'revoked' | 'spent' | 'refused'>;
  /** Verifies an ID token (signature via JWKS, iss, aud, exp) and returns its claims. */
  verifyIdToken(idToken: string, expectedNonce?: string): Promise<IdClaims>;
  /**
   * Verifies a bearer token as the API server does (spec C2): exact `iss`, `aud` any of
   * `audiences`, `exp` without leeway, `nbf` with one minute, `alg` in `algorithms`, signature via
   * the issuer's JWKS (re-fetched on an unknown `kid`, at most every 30 s). Throws
   * AppError 'unauthenticated' (invalid token) or 'provider_unavailable' (JWKS unreachable).
   */
  verifyBearer(token: string, options: BearerVerifyOptions): Promise<IdClaims>;
  /**
   * Verifies a Back-Channel Logout 1.0 logout token (logoutToken.ts) and returns its `jti`, `sid`
   * and `sub`. Throws AppError 'bad_request' (invalid) or 'provider_unavailable' (no JWKS).
   */
  verifyLogoutToken(token: string): Promise<LogoutToken>;
  /** The provider's end_session_endpoint when discovery offers one (released Dex has none). */
  endSessionEndpoint(): string | undefined;
  /** The provider's logout URL for this session, or undefined when discovery offers none. */
  endSessionUrl(request: EndSessionRequest): string | undefined;
  close(): void;
}
