import { request } from 'node:https';
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  type JWTPayload,
  errors as joseErrors,
  jwtVerify,
} from 'jose';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';

/**
 * Verifies JWTs for one issuer of an AuthenticationConfiguration as the API server's JWT
 * authenticator does (go-oidc v2 under k8s.io/apiserver): discovery from `discoveryURL` or
 * `{url}/.well-known/openid-configuration` (its `issuer` must equal `url` byte for byte), the
 * issuer's JWKS (re-fetched on an unknown `kid`), `iss` exact, `aud` containing any of
 * `audiences` (MatchAny), `exp` required and without leeway, `nbf` with one minute, any RS, ES
 * or PS algorithm (the API server allows all of them with an authentication config).
 * `certificateAuthority` is used for the TLS connections to discovery and JWKS.
 */

export const SIGNING_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
];

export type Claims = Readonly<Record<string, unknown>>;

export class TokenRejected extends Error {
  override readonly name = 'TokenRejected';
  /** For WWW-Authenticate error_description. */
  readonly description: string;
  constructor(detail: string, description: string) {
    super(detail);
    this.description = description;
  }
}

export class IssuerUnavailable extends Error {
  override readonly name = 'IssuerUnavailable';
}

export interface IssuerVerifier {
  readonly issuer: string;
  status(): 'ready' | 'unavailable';
  verify(token: string): Promise<Claims>;
  close(): void;
}

export interface IssuerVerifierOptions {
  readonly issuerUrl: string;
  readonly discoveryUrl: string | undefined;
  readonly certificateAuthority: string | undefined;
  readonly audiences: readonly string[];
  readonly clock: Clock;
  readonly log: Logger;
  readonly timeoutMs?: number;
  readonly jwksCooldownMs?: number;
}

type Fetch = (url: string, init?: RequestInit) => Promise<Response>;

/** fetch over node:https with a given CA bundle (http:// URLs use the global fetch). */
export function fetchWithCa(ca: string | undefined): Fetch {
  if (ca === undefined) return (url, init) => fetch(url, init);
  return (url, init) => {
    if (!url.startsWith('https:')) return fetch(url, init);
    return new Promise<Response>((resolve, reject) => {
      const req = request(url, { method: 'GET', ca, signal: init?.signal ?? undefined }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 502 })));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  };
}

/** The unverified `iss` of a compact JWT (accounts.google.com coalesced, as the API server does). */
export function untrustedIssuer(token: string): string | undefined {
  if (token.trimStart().startsWith('{') || token.split('.').length !== 3) return undefined;
  try {
    const iss = decodeJwt(token).iss;
    if (typeof iss !== 'string') return undefined;
    return iss === 'accounts.google.com' ? 'https://accounts.google.com' : iss;
  } catch {
    return undefined;
  }
}

export function createIssuerVerifier(options: IssuerVerifierOptions): IssuerVerifier {
  const { issuerUrl, clock, log } = options;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const fetcher = fetchWithCa(options.certificateAuthority);
  const discoveryUrl =
    options.discoveryUrl ?? `${issuerUrl.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  let inflight: Promise<typeof jwks> | undefined;
  let lastAttempt = Number.NEGATIVE_INFINITY;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  const discover = async () => {
    lastAttempt = clock.now();
    try {
      const response = await fetcher(discoveryUrl, {
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'manual',
      });
      if (response.status !== 200) throw new Error(`discovery answered HTTP ${response.status}`);
      const doc = (await response.json()) as { issuer?: unknown; jwks_uri?: unknown };
      if (doc.issuer !== issuerUrl) {
        throw new Error(
          `discovery issuer ${JSON.stringify(doc.issuer)} differs from issuer.url ${JSON.stringify(issuerUrl)}`,
        );
      }
      if (typeof doc.jwks_uri !== 'string') throw new Error('discovery has no jwks_uri');
      jwks = createRemoteJWKSet(new URL(doc.jwks_uri), {
        timeoutDuration: timeoutMs,
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: 600_000,
        [customFetch]: fetcher,
      });
      log.info({ issuer: issuerUrl }, 'jwt issuer discovered');
      return jwks;
    } catch (error) {
      log.warn(
        { issuer: issuerUrl, err: { message: (error as Error).message } },
        'jwt issuer discovery failed; will retry',
      );
      if (!closed && !timer) {
        // The API server polls every 10 s until discovery succeeds.
        timer = setTimeout(() => {
          timer = undefined;
          void ensure();
        }, 10_000);
        timer.unref();
      }
      return undefined;
    }
  };

  const ensure = () => {
    if (jwks) return Promise.resolve(jwks);
    inflight ??= discover().finally(() => {
      inflight = undefined;
    });
    return inflight;
  };
  void ensure();

  return {
    issuer: issuerUrl,
    status: () => (jwks ? 'ready' : 'unavailable'),
    async verify(token) {
      const keys = jwks ?? (inflight || clock.now() - lastAttempt >= 1_000 ? await ensure() : undefined);
      if (!keys) throw new IssuerUnavailable(`issuer ${issuerUrl} has not been discovered`);
      return verifyWith(keys, token, issuerUrl, options.audiences, clock.now());
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
    },
  };
}

async function verifyWith(
  keys: ReturnType<typeof createRemoteJWKSet>,
  token: string,
  issuerUrl: string,
  audiences: readonly string[],
  now: number,
): Promise<Claims> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      issuer: issuerUrl === 'https://accounts.google.com' ? [issuerUrl, 'accounts.google.com'] : issuerUrl,
      audience: [...audiences],
      algorithms: SIGNING_ALGORITHMS,
      currentDate: new Date(now),
      // One minute for nbf (go-oidc v2); exp gets no leeway, checked below.
      clockTolerance: 60,
      requiredClaims: ['exp'],
    }));
  } catch (error) {
    throw translate(error);
  }
  if (typeof payload.exp !== 'number' || payload.exp * 1000 < now) {
    throw new TokenRejected('token is expired', 'The token has expired.');
  }
  return payload as Claims;
}

function translate(error: unknown): Error {
  if (error instanceof joseErrors.JOSEError) {
    if (error instanceof joseErrors.JWKSTimeout || error.code === 'ERR_JWKS_INVALID') {
      return new IssuerUnavailable(`jwks: ${error.code}`);
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
    return new TokenRejected(error.code, description);
  }
  return new IssuerUnavailable(`jwks fetch: ${(error as Error)?.message ?? String(error)}`);
}
