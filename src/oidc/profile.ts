import type { ProviderProfile, TokenAuthMethod } from './types.ts';

/**
 * Reading a discovery document (OpenID Connect Discovery 1.0 §3) into what the service acts on.
 * Pure functions of the document and the settings, shared by `serve` and `doctor`.
 */

/** The discovery fields used here; every one may be missing or of the wrong type. */
export interface DiscoveryDocument {
  readonly issuer?: unknown;
  readonly authorization_endpoint?: unknown;
  readonly token_endpoint?: unknown;
  readonly jwks_uri?: unknown;
  readonly end_session_endpoint?: unknown;
  readonly scopes_supported?: unknown;
  readonly code_challenge_methods_supported?: unknown;
  readonly token_endpoint_auth_methods_supported?: unknown;
  readonly token_endpoint_auth_signing_alg_values_supported?: unknown;
  readonly prompt_values_supported?: unknown;
  readonly [field: string]: unknown;
}

export const GENERIC_NAME = 'the identity provider';

const strings = (value: unknown): readonly string[] | undefined =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : undefined;

/**
 * Dex, told by the endpoint layout it always publishes (server/handlers.go constructDiscovery,
 * spec A1): `<issuer>/auth`, `<issuer>/token` and `<issuer>/keys`, with the issuer's trailing
 * slash dropped. No other common provider uses all three paths (Keycloak `/protocol/openid-connect/…`,
 * Okta `/v1/…`, Entra ID `/oauth2/v2.0/…`, Google `/o/oauth2/v2/auth`, Authentik
 * `/application/o/…`, oidc-provider's default `/jwks`).
 */
export function looksLikeDex(doc: DiscoveryDocument): boolean {
  if (typeof doc.issuer !== 'string') return false;
  const base = doc.issuer.replace(/\/+$/, '');
  return (
    doc.authorization_endpoint === `${base}/auth` &&
    doc.token_endpoint === `${base}/token` &&
    doc.jwks_uri === `${base}/keys`
  );
}

/** Scopes that work although no provider lists them: Dex's cross-client and federated scopes. */
function acceptedUnlisted(scope: string, isDex: boolean): boolean {
  return isDex && (scope.startsWith('audience:server:client_id:') || scope === 'federated:id');
}

export function unlistedScopes(
  doc: DiscoveryDocument,
  scopes: readonly string[],
  isDex = looksLikeDex(doc),
): string[] {
  const listed = strings(doc.scopes_supported);
  if (!listed) return [];
  return scopes.filter((s) => !listed.includes(s) && !acceptedUnlisted(s, isDex));
}

/** Whether OIDC_CLIENT_ID or OIDC_CLIENT_SECRET read differently once form-encoded (RFC 6749 §2.3.1). */
export function changedByFormEncoding(...values: readonly string[]): boolean {
  return values.some((v) => /[^A-Za-z0-9]/.test(v));
}

export interface AuthMethodSettings {
  readonly tokenAuthMethod: TokenAuthMethod | undefined;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly clientPrivateKey: object | undefined;
}

/**
 * OIDC_TOKEN_AUTH_METHOD when set; else what discovery's token_endpoint_auth_methods_supported
 * allows (client_secret_basic when it says nothing, as RFC 8414 §2 defaults): a private key means
 * private_key_jwt; a secret that form-encoding changes goes in the body when the provider takes it
 * there, since not every provider decodes Basic credentials as RFC 6749 §2.3.1 says.
 */
export function chooseAuthMethod(doc: DiscoveryDocument, settings: AuthMethodSettings): TokenAuthMethod {
  if (settings.tokenAuthMethod) return settings.tokenAuthMethod;
  if (settings.clientPrivateKey && !settings.clientSecret) return 'private_key_jwt';
  const supported = strings(doc.token_endpoint_auth_methods_supported) ?? ['client_secret_basic'];
  const basic = supported.includes('client_secret_basic');
  const post = supported.includes('client_secret_post');
  if (post && (!basic || changedByFormEncoding(settings.clientId, settings.clientSecret))) {
    return 'client_secret_post';
  }
  if (!basic && !post && settings.clientPrivateKey && supported.includes('private_key_jwt')) {
    return 'private_key_jwt';
  }
  return 'client_secret_basic';
}

export interface Pkce {
  /** Send code_challenge (S256) and code_verifier. */
  readonly use: boolean;
  readonly advertised: boolean;
}

/**
 * PKCE S256 is sent unless discovery lists methods without it: a provider that does not advertise
 * PKCE at all ignores the parameters (openid-client sends them the same way), and state and nonce
 * still bind the login to this browser.
 */
export function pkceOf(doc: DiscoveryDocument): Pkce {
  const methods = strings(doc.code_challenge_methods_supported);
  return { use: methods === undefined || methods.includes('S256'), advertised: methods !== undefined };
}

/** `prompt=none` unless the provider lists its prompt values without it (OIDC Prompt Create §4.1). */
export function promptNoneOf(doc: DiscoveryDocument): boolean {
  const prompts = strings(doc.prompt_values_supported);
  return prompts === undefined || prompts.includes('none');
}

export function providerName(isDex: boolean): string {
  return isDex ? 'Dex' : GENERIC_NAME;
}

export interface ProfileSettings extends AuthMethodSettings {
  readonly scopes: readonly string[];
}

/** Everything the service takes from discovery, in one value. */
export function profileFrom(doc: DiscoveryDocument, settings: ProfileSettings): ProviderProfile {
  const isDex = looksLikeDex(doc);
  const pkce = pkceOf(doc);
  return {
    isDex,
    name: providerName(isDex),
    pkce: pkce.use,
    pkceAdvertised: pkce.advertised,
    promptNone: promptNoneOf(doc),
    endSessionEndpoint: typeof doc.end_session_endpoint === 'string' ? doc.end_session_endpoint : undefined,
    tokenAuthMethod: chooseAuthMethod(doc, settings),
    unlistedScopes: unlistedScopes(doc, settings.scopes, isDex),
  };
}

/** The provider's name in page text: `{{provider}}` and `{{providerPhrase}}` (Dex only when it is Dex). */
export function viewWords(profile: ProviderProfile | undefined): {
  provider: string;
  providerPhrase: string;
} {
  return profile?.isDex
    ? { provider: 'Dex', providerPhrase: 'the identity provider (Dex)' }
    : { provider: GENERIC_NAME, providerPhrase: GENERIC_NAME };
}
