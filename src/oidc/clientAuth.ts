import { importPKCS8 } from 'jose';
import * as client from 'openid-client';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { httpAnswerOf } from './errors.ts';
import { changedByFormEncoding } from './profile.ts';
import type { TokenAuthMethod } from './types.ts';

/**
 * Client authentication at the token endpoint (OpenID Connect Core §9), the same for login,
 * refresh and `doctor`'s probe:
 * - client_secret_basic: RFC 6749 §2.3.1 form-encodes id and secret before Base64 (openid-client
 *   does, encoding every character but letters and digits). A provider that does not decode them
 *   refuses a secret with punctuation; on that refusal the call is tried once more with the
 *   credentials as they are, and whichever the provider accepted is kept;
 * - client_secret_post: id and secret in the form body (openid-client's ClientSecretPost);
 * - private_key_jwt: a signed assertion (openid-client's PrivateKeyJwt) whose `aud` is the token
 *   endpoint, as Core §9 recommends and Okta and Entra ID require.
 */

export type BasicEncoding = 'form' | 'raw';

/** Basic with the credentials exactly as configured: for providers that never form-decode them. */
function rawBasic(clientId: string, clientSecret: string): client.ClientAuth {
  return (_as, _client, _body, headers) => {
    headers.set(
      'authorization',
      `Basic ${Buffer.from(`${clientId}:${clientSecret}`, 'utf8').toString('base64')}`,
    );
  };
}

async function privateKeyJwt(config: Config): Promise<client.ClientAuth> {
  const key = config.clientPrivateKey;
  if (!key) throw new Error('OIDC_TOKEN_AUTH_METHOD=private_key_jwt needs OIDC_CLIENT_PRIVATE_KEY');
  const cryptoKey = await importPKCS8(key.pkcs8, key.alg);
  const byServer = new WeakMap<client.ServerMetadata, client.ClientAuth>();
  return (as, metadata, body, headers) => {
    let auth = byServer.get(as);
    if (!auth) {
      auth = client.PrivateKeyJwt(
        { key: cryptoKey, ...(key.header['kid'] ? { kid: key.header['kid'] } : {}) },
        {
          [client.modifyAssertion]: (header, payload) => {
            Object.assign(header, key.header);
            if (as.token_endpoint) payload.aud = as.token_endpoint;
          },
        },
      );
      byServer.set(as, auth);
    }
    return auth(as, metadata, body, headers);
  };
}

/** Builds an openid-client Configuration for the discovered provider around one ClientAuth. */
export type ConfigurationFactory = (auth: client.ClientAuth) => client.Configuration;

export class ClientCredentials {
  readonly method: TokenAuthMethod;
  readonly #config: Config;
  readonly #log: Logger;
  readonly #build: ConfigurationFactory;
  readonly #signed: client.ClientAuth | undefined;
  readonly #configurations = new Map<BasicEncoding, client.Configuration>();
  #encoding: BasicEncoding = 'form';
  /** The unencoded form was refused too: the secret is simply wrong, stop trying both. */
  #rawRefused = false;

  private constructor(
    config: Config,
    log: Logger,
    method: TokenAuthMethod,
    build: ConfigurationFactory,
    signed: client.ClientAuth | undefined,
  ) {
    this.#config = config;
    this.#log = log;
    this.method = method;
    this.#build = build;
    this.#signed = signed;
  }

  static async create(
    config: Config,
    log: Logger,
    method: TokenAuthMethod,
    build: ConfigurationFactory,
  ): Promise<ClientCredentials> {
    const signed = method === 'private_key_jwt' ? await privateKeyJwt(config) : undefined;
    return new ClientCredentials(config, log, method, build, signed);
  }

  /** 'raw' once the provider has shown that it does not decode Basic credentials. */
  get encoding(): BasicEncoding {
    return this.#encoding;
  }

  /** The openid-client Configuration that authenticates this way (`encoding`: doctor's probes). */
  configuration(encoding: BasicEncoding = this.#encoding): client.Configuration {
    let configuration = this.#configurations.get(encoding);
    if (!configuration) {
      configuration = this.#build(this.#auth(encoding));
      this.#configurations.set(encoding, configuration);
    }
    return configuration;
  }

  #auth(encoding: BasicEncoding): client.ClientAuth {
    const { clientId, clientSecret } = this.#config;
    if (this.#signed) return this.#signed;
    if (this.method === 'client_secret_post') return client.ClientSecretPost(clientSecret);
    return encoding === 'raw' ? rawBasic(clientId, clientSecret) : client.ClientSecretBasic(clientSecret);
  }

  /** A refusal of form-encoded Basic credentials that the unencoded ones might turn into an acceptance. */
  #worthRetryingRaw(used: BasicEncoding, error: unknown): boolean {
    if (this.method !== 'client_secret_basic' || used !== 'form' || this.#rawRefused) return false;
    if (!changedByFormEncoding(this.#config.clientId, this.#config.clientSecret)) return false;
    const answer = httpAnswerOf(error);
    return answer !== undefined && (answer.status === 401 || answer.error === 'invalid_client');
  }

  /**
   * Runs one token-endpoint call with the current credentials. On invalid_client with
   * form-encoded Basic credentials that encoding changes, runs it once more unencoded: the
   * provider authenticates the client before it looks at the grant, so the refused attempt spent
   * neither code nor refresh token. Whichever the provider accepted is kept.
   */
  async call<T>(run: (configuration: client.Configuration) => Promise<T>): Promise<T> {
    const used = this.#encoding;
    try {
      return await run(this.configuration(used));
    } catch (error) {
      if (!this.#worthRetryingRaw(used, error)) throw error;
      const result = await run(this.configuration('raw')).catch((rawError: unknown) => {
        if (this.#worthRetryingRaw('form', rawError)) this.#rawRefused = true;
        throw error;
      });
      if (this.#encoding === 'raw') return result;
      this.#encoding = 'raw';
      this.#log.warn(
        { method: this.method },
        'the identity provider accepted the client credentials in HTTP Basic only without the form-encoding RFC 6749 §2.3.1 requires; sending them unencoded from now on (OIDC_TOKEN_AUTH_METHOD=client_secret_post avoids the question where the provider offers it)',
      );
      return result;
    }
  }
}
