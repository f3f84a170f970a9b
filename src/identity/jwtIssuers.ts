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
import { BEARER_ALGORITHM_CHOICES } from '../config.ts';
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

/** jose wants a mutable list; the list itself is the one BEARER_ALGORITHMS chooses from. */
const SIGNING_ALGORITHMS: string[] = [...BEARER_ALGORITHM_CHOICES];

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

type Jwks = ReturnType<typeof createRemoteJWKSet>;

export function createIssuerVerifier(options: IssuerVerifierOptions): IssuerVerifier {
  return new DiscoveredIssuer(options);
}

/**
 * One issuer: discovered at once and, until that succeeds, again every 10 s (as the API server
 * polls) or on a token that arrives at least a second after the last attempt.
 */
class DiscoveredIssuer implements IssuerVerifier {
  readonly issuer: string;
  readonly #options: IssuerVerifierOptions;
  readonly #discoveryUrl: string;
  readonly #fetch: Fetch;
  readonly #timeoutMs: number;
  #jwks: Jwks | undefined;
  #inflight: Promise<Jwks | undefined> | undefined;
  #lastAttempt = Number.NEGATIVE_INFINITY;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: IssuerVerifierOptions) {
    this.issuer = options.issuerUrl;
    this.#options = options;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#fetch = fetchWithCa(options.certificateAuthority);
    this.#discoveryUrl =
      options.discoveryUrl ?? `${this.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    void this.#ensure();
  }

  status(): 'ready' | 'unavailable' {
    return this.#jwks ? 'ready' : 'unavailable';
  }

  async verify(token: string): Promise<Claims> {
    const { clock, audiences } = this.#options;
    const retry = this.#inflight || clock.now() - this.#lastAttempt >= 1_000;
    const keys = this.#jwks ?? (retry ? await this.#ensure() : undefined);
    if (!keys) throw new IssuerUnavailable(`issuer ${this.issuer} has not been discovered`);
    return verifyWith(keys, token, this.issuer, audiences, clock.now());
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  #ensure(): Promise<Jwks | undefined> {
    if (this.#jwks) return Promise.resolve(this.#jwks);
    this.#inflight ??= this.#discover().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #discover(): Promise<Jwks | undefined> {
    const { clock, log } = this.#options;
    this.#lastAttempt = clock.now();
    try {
      const jwksUri = await discoverJwksUri(this.#discoveryUrl, this.issuer, this.#fetch, this.#timeoutMs);
      this.#jwks = createRemoteJWKSet(new URL(jwksUri), {
        timeoutDuration: this.#timeoutMs,
        cooldownDuration: this.#options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: 600_000,
        [customFetch]: this.#fetch,
      });
      log.info({ issuer: this.issuer }, 'jwt issuer discovered');
      return this.#jwks;
    } catch (error) {
      log.warn(
        { issuer: this.issuer, err: { message: (error as Error).message } },
        'jwt issuer discovery failed; will retry',
      );
      this.#retryLater();
      return undefined;
    }
  }

  /** The API server polls every 10 s until discovery succeeds. */
  #retryLater(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#ensure();
    }, 10_000);
    this.#timer.unref();
  }
}

/** The issuer's discovery document → its `jwks_uri`; its `issuer` must equal ours byte for byte. */
async function discoverJwksUri(
  discoveryUrl: string,
  issuerUrl: string,
  fetcher: Fetch,
  timeoutMs: number,
): Promise<string> {
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
  return doc.jwks_uri;
}

async function verifyWith(
  keys: Jwks,
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
