import type { Configuration } from 'oidc-provider';
import { AUDIENCE_SCOPE_PREFIX, dexSubject } from './dexShape.ts';
import type { SigningKey } from './keys.ts';
import { errorPage } from './pages.ts';
import type { StandInProfile } from './profiles.ts';
import { MapAdapter, type MapStore } from './storage.ts';
import type { DexClient } from './types.ts';
import type { DexUser } from './users.ts';

/**
 * Provider setup: the oidc-provider (v9) configuration behind the stand-in. Dex flavour: Dex's
 * routes (`/keys`, `/userinfo`), no logout or revocation; generic flavour: oidc-provider's own
 * routes (`/jwks`, `/me`) and refresh tokens whenever the client may refresh (as Keycloak issues
 * them), so that a silent `prompt=none` login keeps working.
 */

export interface SetupInput {
  readonly store: MapStore;
  readonly clients: readonly DexClient[];
  /** The secret oidc-provider knows each client by (the stand-in authenticates clients itself). */
  readonly internalSecret: (client: DexClient) => string;
  readonly users: () => readonly DexUser[];
  readonly keys: readonly SigningKey[];
  readonly cookieKeys: string[];
  readonly prefix: string;
  readonly idTokenTtl: number;
  readonly profile: StandInProfile;
  /** RFC 7009 revocation at /token/revocation (released Dex has none). */
  readonly revocation: boolean;
}

export function findUserBySub(users: readonly DexUser[], sub: string): DexUser | undefined {
  return users.find((u) => dexSubject(u.userId) === sub);
}

function accountClaims(user: DexUser, sub: string, profile: StandInProfile) {
  const omit = new Set(profile.omitClaims ?? []);
  const claims: { sub: string; [key: string]: unknown } = { sub, name: user.name };
  if (!omit.has('email')) claims['email'] = user.email;
  if (!omit.has('email_verified')) claims['email_verified'] = user.emailVerified;
  if (user.preferredUsername) claims['preferred_username'] = user.preferredUsername;
  if (user.groups.length > 0 && !omit.has('groups')) claims['groups'] = [...user.groups];
  return claims;
}

function ttls(ttl: number): Configuration['ttl'] {
  return {
    AccessToken: ttl,
    IdToken: ttl,
    AuthorizationCode: 1800,
    RefreshToken: 90 * 24 * 3600,
    Grant: 365 * 24 * 3600,
    Interaction: 24 * 3600,
    Session: 24 * 3600,
    ClientCredentials: 600,
    DeviceCode: 600,
    BackchannelAuthenticationRequest: 600,
  };
}

export function providerConfiguration(input: SetupInput): Configuration {
  const dex = input.profile.flavor === 'dex';
  const peers = new Set(['kubernetes', ...input.clients.map((c) => c.clientId)]);
  return {
    adapter: (name: string) => new MapAdapter(name, input.store),
    clients: input.clients.map((c) => ({
      client_id: c.clientId,
      client_secret: input.internalSecret(c),
      redirect_uris: c.redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    scopes: ['openid', 'offline_access', 'federated:id', ...[...peers].map((p) => AUDIENCE_SCOPE_PREFIX + p)],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false,
    findAccount: (_ctx, sub) => {
      const user = findUserBySub(input.users(), sub);
      if (!user) return undefined;
      return { accountId: sub, claims: () => accountClaims(user, sub, input.profile) };
    },
    jwks: { keys: input.keys.map((k) => k.jwk) as NonNullable<Configuration['jwks']>['keys'] },
    enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
    routes: dex ? { jwks: '/keys', userinfo: '/userinfo', introspection: '/token/introspect' } : {},
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      dPoP: { enabled: false },
      revocation: { enabled: input.revocation },
      introspection: { enabled: false },
      userinfo: { enabled: true },
    },
    ...(dex ? {} : { issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token') }),
    interactions: { url: (_ctx, interaction) => `${input.prefix}/interaction/${interaction.uid}` },
    pkce: { required: () => false },
    rotateRefreshToken: true,
    ttl: ttls(input.idTokenTtl),
    cookies: { keys: input.cookieKeys },
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = errorPage('Bad Request', `${out.error}: ${out.error_description ?? ''}`);
    },
  };
}
