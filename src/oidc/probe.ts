import * as client from 'openid-client';
import type { Config } from '../config.ts';
import { describeError } from '../errors.ts';
import { silentLogger } from '../log.ts';
import { authorizationParameters, newLoginSecrets } from './authorizationUrl.ts';
import { type BasicEncoding, ClientCredentials } from './clientAuth.ts';
import { httpAnswerOf } from './errors.ts';
import { type DiscoveryDocument, profileFrom } from './profile.ts';
import { Transport } from './transport.ts';
import type { TokenAuthMethod } from './types.ts';

/**
 * What `doctor` asks the provider, built by the same code as a real login: the token endpoint is
 * called with the client authentication login uses (a made-up code, so nothing is granted), and
 * the authorization URL carries the login's own parameters.
 */

export interface TokenProbe {
  /** Undefined when no answer came (then `reason` says why). */
  readonly status: number | undefined;
  /** The OAuth `error` of the answer, if it had one. */
  readonly error: string | undefined;
  readonly reason?: string;
}

export interface TokenProbeOptions {
  readonly redirectUri: string;
  readonly timeoutMs: number;
  /** Default: what serve would choose (OIDC_TOKEN_AUTH_METHOD, or discovery). */
  readonly method?: TokenAuthMethod;
  /** Basic credentials form-encoded (RFC 6749, as login first sends them) or as they are. */
  readonly encoding?: BasicEncoding;
}

function serverMetadata(doc: DiscoveryDocument): client.ServerMetadata {
  return doc as unknown as client.ServerMetadata;
}

function factory(config: Config, doc: DiscoveryDocument, timeoutMs: number) {
  return (auth: client.ClientAuth): client.Configuration => {
    const configuration = new client.Configuration(serverMetadata(doc), config.clientId, undefined, auth);
    if (config.allowInsecureHttp) client.allowInsecureRequests(configuration);
    configuration.timeout = Math.ceil(timeoutMs / 1000);
    configuration[client.customFetch] = new Transport(undefined, Date.now).fetch();
    return configuration;
  };
}

export async function probeTokenEndpoint(
  config: Config,
  doc: DiscoveryDocument,
  options: TokenProbeOptions,
): Promise<TokenProbe> {
  const method = options.method ?? profileFrom(doc, config).tokenAuthMethod;
  try {
    const credentials = await ClientCredentials.create(
      config,
      silentLogger(),
      method,
      factory(config, doc, options.timeoutMs),
    );
    await client.genericGrantRequest(
      credentials.configuration(options.encoding ?? 'form'),
      'authorization_code',
      {
        code: `dex-forward-auth-doctor-${client.randomState()}`,
        redirect_uri: options.redirectUri,
      },
    );
    return { status: 200, error: undefined };
  } catch (error) {
    const answer = httpAnswerOf(error);
    if (answer) return answer;
    const e = error as { name?: string };
    const reason =
      e?.name === 'TimeoutError' || e?.name === 'AbortError' ? 'timed out' : describeError(error);
    return { status: undefined, error: undefined, reason };
  }
}

/** The authorization URL a login for `redirectUri` would use (fresh state, nonce and PKCE). */
export async function probeAuthorizationUrl(
  config: Config,
  doc: DiscoveryDocument,
  redirectUri: string,
): Promise<URL> {
  const parameters = await authorizationParameters(profileFrom(doc, config), config, {
    redirectUri,
    ...newLoginSecrets(),
  });
  return client.buildAuthorizationUrl(factory(config, doc, 5_000)(client.None()), parameters);
}
