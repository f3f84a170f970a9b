import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose';
import * as client from 'openid-client';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { ClientCredentials } from './clientAuth.ts';
import { profileFrom } from './profile.ts';
import type { Transport } from './transport.ts';
import type { ProviderProfile } from './types.ts';

/** `discover`: one attempt at the provider's discovery document, and what follows from it. */

export interface Discovered {
  readonly metadata: client.ServerMetadata;
  readonly credentials: ClientCredentials;
  readonly jwks: JWTVerifyGetKey;
  /** ID-token signing algorithms the provider announces (never `none`). */
  readonly algorithms: readonly string[];
  readonly profile: ProviderProfile;
}

export interface DiscoverOptions {
  readonly config: Config;
  readonly log: Logger;
  readonly transport: Transport;
  /** Per-call timeout, ms. */
  readonly timeoutMs: number;
  /** Least time between two JWKS fetches for an unknown `kid`, ms. */
  readonly jwksCooldownMs: number;
}

function checkMetadata(metadata: client.ServerMetadata, config: Config): void {
  if (metadata.issuer !== config.issuerUrl) {
    throw new Error(
      `discovery issuer "${metadata.issuer}" differs from OIDC_ISSUER_URL "${config.issuerUrl}"`,
    );
  }
  if (!metadata.jwks_uri) throw new Error('discovery has no jwks_uri');
}

/** A Configuration around one way of authenticating, with our timeout, transport and http flag. */
function configurationFactory(metadata: client.ServerMetadata, options: DiscoverOptions) {
  return (auth: client.ClientAuth): client.Configuration => {
    const configuration = new client.Configuration(metadata, options.config.clientId, undefined, auth);
    if (options.config.allowInsecureHttp) client.allowInsecureRequests(configuration);
    configuration.timeout = Math.ceil(options.timeoutMs / 1000);
    configuration[client.customFetch] = options.transport.fetch();
    return configuration;
  };
}

function signingAlgorithms(metadata: client.ServerMetadata): string[] {
  const announced = metadata.id_token_signing_alg_values_supported?.filter((a) => a !== 'none') ?? [];
  return announced.length > 0 ? announced : ['RS256'];
}

export async function discover(options: DiscoverOptions): Promise<Discovered> {
  const { config } = options;
  const found = await client.discovery(new URL(config.issuerUrl), config.clientId, undefined, client.None(), {
    execute: config.allowInsecureHttp ? [client.allowInsecureRequests] : [],
    timeout: Math.ceil(options.timeoutMs / 1000),
    [client.customFetch]: options.transport.fetch(),
  });
  const metadata = found.serverMetadata();
  checkMetadata(metadata, config);
  const profile = profileFrom(metadata, config);
  const credentials = await ClientCredentials.create(
    config,
    options.log,
    profile.tokenAuthMethod,
    configurationFactory(metadata, options),
  );
  const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri as string), {
    timeoutDuration: options.timeoutMs,
    cooldownDuration: options.jwksCooldownMs,
    cacheMaxAge: 600_000,
    [customFetch]: options.transport.fetch('jwks'),
  });
  return { metadata, credentials, jwks, algorithms: signingAlgorithms(metadata), profile };
}
