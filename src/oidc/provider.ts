import { createRemoteJWKSet, customFetch, type JWTPayload, errors as joseErrors, jwtVerify } from 'jose';
import * as client from 'openid-client';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { AppError, describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ProviderOperation, ProviderResult } from '../metrics.ts';

/**
 * The only importer of openid-client (STYLE: one owner per library). Speaks the protocol steps
 * — discover, authorize URL, code grant, refresh grant — and translates every lower-level error
 * into AppError or RefreshError at this border.
 */

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

/** How a refresh failed: terminal ends the session; transient keeps it and retries later. */
export class RefreshError extends Error {
  readonly kind: 'terminal' | 'transient';
  readonly status: number | undefined;
  readonly oauthError: string | undefined;
  constructor(kind: 'terminal' | 'transient', message: string, status?: number, oauthError?: string) {
    super(message);
    this.name = 'RefreshError';
    this.kind = kind;
    this.status = status;
    this.oauthError = oauthError;
  }
}

export interface AuthorizationRequest {
  readonly redirectUri: string;
  readonly state: string;
  readonly nonce: string;
  readonly codeVerifier: string;
}

export interface OidcProvider {
  readonly issuer: string;
  /** 'ready' once discovery succeeded. */
  status(): 'ready' | 'unavailable';
  /**
   * Whether the provider answers right now (its discovery document, cached for a few seconds).
   * Checked before sending a browser to log in, so a down Dex gets a clear 503 page instead of a
   * redirect into the void.
   */
  reachable(): Promise<boolean>;
  /** The provider's end_session_endpoint when discovery offers one (released Dex has none). */
  endSessionEndpoint(): string | undefined;
  authorizationUrl(request: AuthorizationRequest): Promise<string>;
  exchangeCode(callbackUrl: URL, request: AuthorizationRequest): Promise<TokenResult>;
  refresh(refreshToken: string): Promise<TokenResult>;
  /**
   * Ends a refresh token's usefulness (sign-out): RFC 7009 revocation when discovery offers a
   * `revocation_endpoint`; otherwise (released Dex has none) the token is *spent* with a refresh
   * grant whose result is thrown away, so that a later use of it is refused (Dex: outside its
   * `reuseInterval`; oidc-provider: reuse revokes the whole grant). 'refused': the provider no
   * longer took it (already spent or revoked). Throws RefreshError 'transient' when it cannot be
   * reached.
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
  close(): void;
}

export interface BearerVerifyOptions {
  readonly audiences: readonly string[];
  readonly algorithms: readonly string[];
}

export function newLoginSecrets(): { state: string; nonce: string; codeVerifier: string } {
  return {
    state: client.randomState(),
    nonce: client.randomNonce(),
    codeVerifier: client.randomPKCECodeVerifier(),
  };
}

interface Discovered {
  readonly configuration: client.Configuration;
  readonly jwks: ReturnType<typeof createRemoteJWKSet>;
  readonly algorithms: string[];
}

export interface OidcProviderOptions {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  /** Per-call timeout for provider requests, ms. */
  readonly timeoutMs?: number;
  /** Least time between two JWKS fetches for an unknown `kid`, ms (default 30 s). */
  readonly jwksCooldownMs?: number;
  /** Told about every HTTP round trip to the provider (metrics). */
  readonly observe?: (operation: ProviderOperation, seconds: number, result: ProviderResult) => void;
}

/** fetch, timed: every round trip to the provider is reported with its operation and result. */
function observedFetch(observe: NonNullable<OidcProviderOptions['observe']>, fixed?: ProviderOperation) {
  return async (url: string, init: RequestInit): Promise<Response> => {
    let operation: ProviderOperation = fixed ?? 'other';
    if (!fixed) {
      const grant = init.body instanceof URLSearchParams ? init.body.get('grant_type') : null;
      if (grant === 'refresh_token') operation = 'refresh';
      else if (grant === 'authorization_code') operation = 'code';
      else if (url.includes('/.well-known/openid-configuration')) operation = 'discovery';
    }
    const started = performance.now();
    try {
      const response = await fetch(url, init);
      const result: ProviderResult =
        response.status >= 500 ? 'error' : response.status >= 400 ? 'refused' : 'ok';
      observe(operation, (performance.now() - started) / 1000, result);
      return response;
    } catch (error) {
      observe(operation, (performance.now() - started) / 1000, 'error');
      throw error;
    }
  };
}

/**
 * Discovery runs in the background and is retried with back-off (1 s → 30 s) so a briefly
 * unreachable Dex never crash-loops the service; callers that need it get a clean 503 meanwhile.
 */
export function createOidcProvider(options: OidcProviderOptions): OidcProvider {
  const { config, log, clock } = options;
  const timeoutSeconds = Math.ceil((options.timeoutMs ?? 10_000) / 1000);
  let discovered: Discovered | undefined;
  let inflight: Promise<Discovered | undefined> | undefined;
  let lastAttempt = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let backoff = 1_000;
  let closed = false;
  /** Why the last discovery failed, for the detail of the 503s meanwhile. */
  let lastFailure = 'not tried yet';

  const discover = async (): Promise<Discovered | undefined> => {
    lastAttempt = clock.now();
    try {
      const execute = config.allowInsecureHttp ? [client.allowInsecureRequests] : [];
      const configuration = await client.discovery(
        new URL(config.issuerUrl),
        config.clientId,
        undefined,
        client.ClientSecretBasic(config.clientSecret),
        {
          execute,
          timeout: timeoutSeconds,
          ...(options.observe ? { [client.customFetch]: observedFetch(options.observe) } : {}),
        },
      );
      const metadata = configuration.serverMetadata();
      if (metadata.issuer !== config.issuerUrl) {
        throw new Error(
          `discovery issuer "${metadata.issuer}" differs from OIDC_ISSUER_URL "${config.issuerUrl}"`,
        );
      }
      if (!metadata.jwks_uri) throw new Error('discovery has no jwks_uri');
      const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri), {
        timeoutDuration: options.timeoutMs ?? 10_000,
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: 600_000,
        ...(options.observe ? { [customFetch]: observedFetch(options.observe, 'jwks') } : {}),
      });
      const algorithms = metadata.id_token_signing_alg_values_supported?.filter((a) => a !== 'none') ?? [
        'RS256',
      ];
      const result = { configuration, jwks, algorithms: algorithms.length > 0 ? algorithms : ['RS256'] };
      discovered = result;
      backoff = 1_000;
      log.info({ issuer: config.issuerUrl }, 'oidc provider discovered');
      return result;
    } catch (error) {
      lastFailure = describeError(error);
      log.warn(
        { issuer: config.issuerUrl, err: { message: lastFailure }, retryInMs: backoff },
        'oidc discovery failed; will retry',
      );
      scheduleRetry();
      return undefined;
    }
  };

  const scheduleRetry = (): void => {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      if (!discovered) void ensure();
    }, backoff);
    retryTimer.unref();
    backoff = Math.min(backoff * 2, 30_000);
  };

  const ensure = (): Promise<Discovered | undefined> => {
    if (discovered) return Promise.resolve(discovered);
    inflight ??= discover().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };

  const ready = async (): Promise<Discovered> => {
    // On demand, try again at most once a second while discovery is failing.
    const d = discovered ?? (inflight || clock.now() - lastAttempt >= 1_000 ? await ensure() : undefined);
    if (!d) {
      throw new AppError(
        'provider_unavailable',
        'The identity provider cannot be reached right now. Please try again shortly.',
        {
          detail: `oidc discovery has not succeeded: ${lastFailure}`,
          headers: { 'Retry-After': '5' },
        },
      );
    }
    return d;
  };

  void ensure();

  // Liveness probe of the provider: a cached GET of the discovery document.
  const discoveryUrl = `${config.issuerUrl.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let probeResult: { ok: boolean; until: number } | undefined;
  let probing: Promise<boolean> | undefined;
  const probe = (): Promise<boolean> => {
    const now = clock.now();
    if (probeResult && probeResult.until > now) return Promise.resolve(probeResult.ok);
    probing ??= fetch(discoveryUrl, { signal: AbortSignal.timeout(2_000), redirect: 'manual' })
      .then(
        async (response) => {
          await response.body?.cancel();
          return response.status === 200;
        },
        () => false,
      )
      .then((ok) => {
        probeResult = { ok, until: clock.now() + (ok ? 5_000 : 1_000) };
        probing = undefined;
        return ok;
      });
    return probing;
  };

  const verify = async (d: Discovered, idToken: string, expectedNonce?: string): Promise<IdClaims> => {
    const { payload } = await jwtVerify(idToken, d.jwks, {
      issuer: config.issuerUrl,
      audience: config.clientId,
      algorithms: d.algorithms,
      currentDate: new Date(clock.now()),
      requiredClaims: ['sub', 'exp', 'iat'],
    });
    if (expectedNonce !== undefined && payload['nonce'] !== expectedNonce) {
      throw new AppError('login_state_invalid', 'The login could not be verified. Please sign in again.', {
        detail: 'id token nonce mismatch',
      });
    }
    return payload as IdClaims;
  };

  const tokenResult = async (
    d: Discovered,
    response: client.TokenEndpointResponse,
    expectedNonce?: string,
  ): Promise<TokenResult> => {
    const idToken = response.id_token;
    if (!idToken) throw new Error('the token response has no id_token');
    const claims = await verify(d, idToken, expectedNonce);
    return { idToken, refreshToken: response.refresh_token, claims };
  };

  return {
    issuer: config.issuerUrl,
    status: () => (discovered ? 'ready' : 'unavailable'),
    reachable: () => probe(),
    endSessionEndpoint: () => discovered?.configuration.serverMetadata().end_session_endpoint,

    async authorizationUrl(request) {
      const d = await ready();
      const url = client.buildAuthorizationUrl(d.configuration, {
        redirect_uri: request.redirectUri,
        scope: config.scopes.join(' '),
        state: request.state,
        nonce: request.nonce,
        code_challenge: await client.calculatePKCECodeChallenge(request.codeVerifier),
        code_challenge_method: 'S256',
      });
      return url.toString();
    },

    async exchangeCode(callbackUrl, request) {
      const d = await ready();
      try {
        const response = await client.authorizationCodeGrant(
          d.configuration,
          callbackUrl,
          {
            pkceCodeVerifier: request.codeVerifier,
            expectedState: request.state,
            expectedNonce: request.nonce,
            idTokenExpected: true,
          },
          { redirect_uri: request.redirectUri },
        );
        return await tokenResult(d, response, request.nonce);
      } catch (error) {
        throw translateCodeError(error);
      }
    },

    async refresh(refreshToken) {
      let d: Discovered;
      try {
        d = await ready();
      } catch {
        throw new RefreshError('transient', 'provider not discovered');
      }
      let response: client.TokenEndpointResponse;
      try {
        response = await client.refreshTokenGrant(d.configuration, refreshToken);
      } catch (error) {
        throw classifyRefreshError(error);
      }
      try {
        const result = await tokenResult(d, response);
        // Dex returns the same refresh token inside its reuse window; keep the old one if none came.
        return { ...result, refreshToken: result.refreshToken ?? refreshToken };
      } catch (error) {
        if (error instanceof joseErrors.JOSEError) {
          throw new RefreshError('terminal', `refreshed id token rejected: ${error.code}`);
        }
        throw new RefreshError('transient', `refresh response unusable: ${(error as Error).message}`);
      }
    },

    async revokeRefreshToken(refreshToken) {
      let d: Discovered;
      try {
        d = await ready();
      } catch {
        throw new RefreshError('transient', 'provider not discovered');
      }
      return revokeOrSpend(d.configuration, refreshToken);
    },

    async verifyIdToken(idToken, expectedNonce) {
      return verify(await ready(), idToken, expectedNonce);
    },

    async verifyBearer(token, { audiences, algorithms }) {
      const d = await ready();
      const now = clock.now();
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, d.jwks, {
          issuer: config.issuerUrl,
          audience: [...audiences],
          algorithms: [...algorithms],
          currentDate: new Date(now),
          // One minute for nbf (go-oidc v2); exp gets no leeway, checked below.
          clockTolerance: 60,
          requiredClaims: ['exp'],
        }));
      } catch (error) {
        throw translateBearerError(error);
      }
      if (typeof payload.exp !== 'number' || payload.exp * 1000 < now) {
        throw invalidBearer('token expired', 'The token has expired.');
      }
      return payload as IdClaims;
    },

    close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
    },
  };
}

function translateCodeError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof client.AuthorizationResponseError) {
    return new AppError('provider_denied', 'The identity provider did not complete the sign-in.', {
      detail: `authorization response error: ${error.error}`,
    });
  }
  if (error instanceof client.ResponseBodyError) {
    const status = error.status;
    if (status >= 500) {
      return new AppError('provider_error', 'The identity provider failed while finishing the sign-in.', {
        detail: `token endpoint ${status} ${error.error}`,
      });
    }
    return new AppError(
      'login_state_invalid',
      'This sign-in link has expired or was already used. Please sign in again.',
      {
        detail: `token endpoint ${status} ${error.error}`,
      },
    );
  }
  if (error instanceof joseErrors.JOSEError) {
    return new AppError(
      'login_state_invalid',
      'The identity token could not be verified. Please sign in again.',
      {
        detail: `id token rejected: ${error.code}`,
      },
    );
  }
  const e = error as { code?: string; message?: string; name?: string };
  if (e?.code?.startsWith?.('OAUTH_') && e.code !== 'OAUTH_RESPONSE_IS_NOT_CONFORM') {
    return new AppError(
      'login_state_invalid',
      'The sign-in response could not be verified. Please sign in again.',
      {
        detail: `${e.code}: ${e.message}`,
      },
    );
  }
  return new AppError(
    'provider_unavailable',
    'The identity provider cannot be reached right now. Please try again shortly.',
    {
      detail: `${e?.name ?? 'Error'}: ${describeError(error)}`,
      headers: { 'Retry-After': '5' },
    },
  );
}

function invalidBearer(detail: string, description: string): AppError {
  return new AppError('unauthenticated', 'The bearer token is not valid.', {
    detail: `bearer token refused: ${detail}`,
    headers: {
      'WWW-Authenticate': `Bearer realm="dex-forward-auth", error="invalid_token", error_description="${description}"`,
    },
  });
}

/** jose's verdicts on a bearer token → 401; an unreachable JWKS → 503. */
function translateBearerError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof joseErrors.JOSEError) {
    if (error instanceof joseErrors.JWKSTimeout || error.code === 'ERR_JWKS_INVALID') {
      return new AppError(
        'provider_unavailable',
        'The identity provider cannot be reached right now. Please try again shortly.',
        { detail: `jwks: ${error.code}`, headers: { 'Retry-After': '5' } },
      );
    }
    const description =
      error instanceof joseErrors.JWTExpired
        ? 'The token has expired.'
        : error instanceof joseErrors.JWTClaimValidationFailed
          ? `The token's "${error.claim}" claim is not acceptable.`
          : error instanceof joseErrors.JOSEAlgNotAllowed
            ? 'The token is signed with an algorithm that is not allowed.'
            : error instanceof joseErrors.JWKSNoMatchingKey
              ? "The token's signing key is unknown."
              : 'The token could not be verified.';
    return invalidBearer(error.code, description);
  }
  const e = error as { name?: string; message?: string };
  return new AppError(
    'provider_unavailable',
    'The identity provider cannot be reached right now. Please try again shortly.',
    {
      detail: `jwks fetch: ${e?.name ?? 'Error'}: ${describeError(error)}`,
      headers: { 'Retry-After': '5' },
    },
  );
}

/** Dex answers most refusals with 400 invalid_request (spec A9): any 4xx is terminal. */
async function revokeOrSpend(
  configuration: client.Configuration,
  refreshToken: string,
): Promise<'revoked' | 'spent' | 'refused'> {
  if (configuration.serverMetadata().revocation_endpoint) {
    try {
      await client.tokenRevocation(configuration, refreshToken, { token_type_hint: 'refresh_token' });
      return 'revoked';
    } catch (error) {
      const refused = classifyRefreshError(error);
      if (refused.kind === 'terminal') return 'refused';
      throw refused;
    }
  }
  try {
    await client.refreshTokenGrant(configuration, refreshToken);
    return 'spent';
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // The provider answered 200 but the answer did not validate: the token was spent all the same.
    const unusable = code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || code === 'OAUTH_INVALID_RESPONSE';
    if (typeof code === 'string' && code.startsWith('OAUTH_') && !unusable) return 'spent';
    const refused = classifyRefreshError(error);
    if (refused.kind === 'terminal') return 'refused';
    throw refused;
  }
}

export function classifyRefreshError(error: unknown): RefreshError {
  if (error instanceof client.ResponseBodyError) {
    const kind = error.status >= 400 && error.status < 500 ? 'terminal' : 'transient';
    return new RefreshError(
      kind,
      `token endpoint answered ${error.status} ${error.error}`,
      error.status,
      error.error,
    );
  }
  const e = error as { code?: string; message?: string; cause?: unknown };
  if (e?.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || e?.code === 'OAUTH_INVALID_RESPONSE') {
    // A non-JSON error page (proxy 502 etc.) or a malformed answer: treat as transient.
    const status = (e.cause as { status?: number } | undefined)?.status;
    if (status !== undefined && status >= 400 && status < 500) {
      return new RefreshError('terminal', `token endpoint answered ${status}`, status);
    }
  }
  return new RefreshError('transient', `token endpoint unreachable: ${describeError(error)}`);
}
