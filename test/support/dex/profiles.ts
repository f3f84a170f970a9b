/**
 * How far the stand-in departs from Dex: one profile per way a standards-following OpenID provider
 * (Keycloak, Authentik, Okta, Entra ID, Google …) may differ from it. The `dex` profile is the
 * stand-in as it always was; the others are `generic`: oidc-provider's own discovery layout
 * (`/jwks`), token shapes and login session (SSO, so `prompt=none` can succeed), plus the
 * departures listed.
 */

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

export interface StandInProfile {
  readonly name: string;
  /** Dex's discovery, token shapes, error codes and no login session; or a generic provider's. */
  readonly flavor: 'dex' | 'generic';
  /** Default true. false: refresh responses carry no id_token (OpenID Connect Core §12.2). */
  readonly idTokenOnRefresh?: boolean;
  /** Claims left out of every ID token and userinfo answer. */
  readonly omitClaims?: readonly ('groups' | 'email' | 'email_verified')[];
  /** Advertised in discovery and enforced at /token; default: Basic and POST (both, like Dex). */
  readonly authMethods?: readonly ClientAuthMethod[];
  /** 'none': Basic credentials are compared as sent, never form-decoded (RFC 6749 §2.3.1 says decode). */
  readonly basicDecoding?: 'form' | 'none';
  /** An end_session_endpoint that refuses requests without a valid id_token_hint. */
  readonly endSession?: 'none' | 'id_token_hint_required';
  /** Every 4xx from the token endpoint comes with an empty body (no JSON, no OAuth error). */
  readonly emptyRefusals?: boolean;
  /** Default true. false: no code_challenge_methods_supported, and PKCE parameters are ignored. */
  readonly pkce?: boolean;
  /** Replaces discovery's scopes_supported. */
  readonly scopesSupported?: readonly string[];
}

export const DEX_PROFILE: StandInProfile = { name: 'dex', flavor: 'dex' };

/** A secret with the punctuation RFC 6749 §2.3.1 form-encoding changes. */
export const PUNCTUATED_SECRET = 'se-cret+with%punct:uation-0123456789';

/** The provider profiles the interop matrix runs (test/flows/providers-*.test.ts). */
export const PROFILES = {
  dex: DEX_PROFILE,
  /** One-time refresh tokens with reuse detection, and no new ID token on refresh. */
  noIdTokenOnRefresh: { name: 'no id_token on refresh', flavor: 'generic', idTokenOnRefresh: false },
  /** No groups, no email_verified, no PKCE advertised, a scopes_supported without groups. */
  minimalClaims: {
    name: 'minimal claims, no PKCE advertised',
    flavor: 'generic',
    omitClaims: ['groups', 'email_verified'],
    pkce: false,
    scopesSupported: ['openid', 'profile', 'email', 'offline_access'],
  },
  /** Only client_secret_post; the secret has punctuation. */
  postOnly: { name: 'client_secret_post only', flavor: 'generic', authMethods: ['client_secret_post'] },
  /** Only client_secret_basic, never form-decoded; the secret has punctuation. */
  undecodedBasic: {
    name: 'Basic credentials not form-decoded',
    flavor: 'generic',
    authMethods: ['client_secret_basic'],
    basicDecoding: 'none',
  },
  /** RP-initiated logout that requires id_token_hint; refusals as 400 with an empty body. */
  logoutHint: {
    name: 'logout needs id_token_hint, empty 400s',
    flavor: 'generic',
    endSession: 'id_token_hint_required',
    emptyRefusals: true,
  },
} as const satisfies Record<string, StandInProfile>;

export type ProfileKey = keyof typeof PROFILES;
