import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import {
  AuthenticationConfigError,
  type AuthenticationFileOptions,
  type LoadedAuthentication,
  loadAuthenticationFile,
  watchAuthenticationFile,
} from './authenticationFile.ts';
import { type KubernetesUser, mapClaims, type Refusal } from './claimMappings.ts';
import { emailVerifiedOf, type Identity } from './identity.ts';
import {
  type Claims,
  createIssuerVerifier,
  type IssuerVerifier,
  TokenRejected,
  untrustedIssuer,
} from './jwtIssuers.ts';
import type { CompiledJwtAuthenticator } from './validation.ts';

/**
 * Identity from an AUTHENTICATION_CONFIG file, exactly as the API server derives it
 * (issue 17). Sessions (the browser login, always OIDC_ISSUER_URL) map the ID token's claims
 * with that issuer's entry, after the same audience check the API server makes; bearer tokens
 * of any issuer in the file are verified against that issuer's own keys and mapped with its
 * entry. An identity the API server would refuse carries `refused` (the rule and its message),
 * which the authorizer turns into a denial.
 */

export type BearerAuthentication =
  | { readonly kind: 'none' }
  | { readonly kind: 'valid'; readonly identity: Identity }
  | { readonly kind: 'invalid'; readonly detail: string; readonly description: string };

export interface AuthenticationService {
  readonly path: string;
  /** The revision in force (sha256 prefix of the file). */
  revision(): string;
  /** The session identity for verified login claims (OIDC_ISSUER_URL's entry). */
  identify(claims: Claims): Identity;
  /** False when `identity` was mapped with an older file: map it again. */
  isCurrent(identity: Identity): boolean;
  /** Verifies and maps a bearer token; throws IssuerUnavailable when its issuer cannot be reached. */
  authenticateBearer(token: string): Promise<BearerAuthentication>;
  /** The issuers in force, for /readyz and doctor. */
  issuers(): readonly { readonly issuer: string; readonly status: 'ready' | 'unavailable' }[];
  close(): void;
}

export interface AuthenticationServiceOptions extends AuthenticationFileOptions {
  readonly log: Logger;
  readonly clock: Clock;
  readonly pollMs?: number;
  /** Fresh JWKS look-ups at most this often per issuer for an unknown kid (default 30 s). */
  readonly jwksCooldownMs?: number;
  readonly onReload?: (result: 'ok' | 'error') => void;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The Identity the rest of the service uses, from claims and the API server's user (or refusal). */
export function toIdentity(
  claims: Claims,
  revision: string,
  result: { user: KubernetesUser } | { refusal: Refusal },
): Identity {
  const base = {
    sub: str(claims['sub']) ?? '',
    email: str(claims['email']),
    emailVerified: emailVerifiedOf(claims),
    name: str(claims['name']),
    preferredUsername: str(claims['preferred_username']),
    authnRevision: revision,
  };
  if ('refusal' in result) return { ...base, user: '', groups: [], refused: result.refusal };
  const { user } = result;
  return { ...base, user: user.username, groups: [...user.groups], uid: user.uid, extra: user.extra };
}

/** The API server's MatchAny audience check, for ID tokens that did not go through jwtIssuers. */
function audienceRefusal(a: CompiledJwtAuthenticator, claims: Claims): Refusal | undefined {
  const aud = claims['aud'];
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (audiences.some((x) => a.audiences.includes(x))) return undefined;
  return {
    field: `jwt[${a.index}].issuer.audiences`,
    message: `The ID token's audience ${JSON.stringify(audiences)} is none of ${JSON.stringify(a.audiences)}, so the API server would refuse it (ask Dex for one of them with the scope audience:server:client_id:<audience>).`,
  };
}

const verifierKey = (a: CompiledJwtAuthenticator) =>
  JSON.stringify([a.issuerUrl, a.discoveryUrl, a.certificateAuthority, a.audiences]);

/**
 * The file in force, its authenticators by issuer, and one verifier per distinct issuer entry:
 * a reload keeps the verifiers (and their JWKS) of entries it did not change, and closes the rest.
 */
class IssuerSet {
  #loaded: LoadedAuthentication;
  #byIssuer: ReadonlyMap<string, CompiledJwtAuthenticator>;
  #verifiers = new Map<string, IssuerVerifier>();
  readonly #options: AuthenticationServiceOptions;

  constructor(loaded: LoadedAuthentication, options: AuthenticationServiceOptions) {
    this.#options = options;
    this.#loaded = loaded;
    this.#byIssuer = IssuerSet.#index(loaded);
    this.#syncVerifiers();
  }

  get revision(): string {
    return this.#loaded.revision;
  }

  replace(next: LoadedAuthentication): void {
    this.#loaded = next;
    this.#byIssuer = IssuerSet.#index(next);
    this.#syncVerifiers();
  }

  authenticator(issuer: string): CompiledJwtAuthenticator | undefined {
    return this.#byIssuer.get(issuer);
  }

  verifier(a: CompiledJwtAuthenticator): IssuerVerifier {
    return this.#verifiers.get(verifierKey(a)) as IssuerVerifier;
  }

  issuers(): ReturnType<AuthenticationService['issuers']> {
    return [...this.#verifiers.values()].map((v) => ({ issuer: v.issuer, status: v.status() }));
  }

  close(): void {
    for (const v of this.#verifiers.values()) v.close();
  }

  static #index(loaded: LoadedAuthentication): ReadonlyMap<string, CompiledJwtAuthenticator> {
    return new Map(loaded.authenticators.map((a) => [a.issuerUrl, a] as const));
  }

  #syncVerifiers(): void {
    const next = new Map<string, IssuerVerifier>();
    for (const a of this.#loaded.authenticators) {
      const key = verifierKey(a);
      next.set(key, this.#verifiers.get(key) ?? this.#newVerifier(a));
    }
    for (const [key, v] of this.#verifiers) if (!next.has(key)) v.close();
    this.#verifiers = next;
  }

  #newVerifier(a: CompiledJwtAuthenticator): IssuerVerifier {
    const { clock, log, jwksCooldownMs } = this.#options;
    return createIssuerVerifier({
      issuerUrl: a.issuerUrl,
      discoveryUrl: a.discoveryUrl,
      certificateAuthority: a.certificateAuthority,
      audiences: a.audiences,
      clock,
      log,
      ...(jwksCooldownMs !== undefined ? { jwksCooldownMs } : {}),
    });
  }
}

export function createAuthenticationService(options: AuthenticationServiceOptions): AuthenticationService {
  const first = loadAuthenticationFile(options);
  if (!first.loaded) throw new AuthenticationConfigError(first.problems);
  const issuers = new IssuerSet(first.loaded, options);
  const stop = watchAuthenticationFile(first.loaded, {
    ...options,
    onChange: (next) => issuers.replace(next),
  });
  options.log.info(
    {
      path: options.path,
      revision: first.loaded.revision,
      issuers: first.loaded.authenticators.map((a) => a.issuerUrl),
    },
    'AUTHENTICATION_CONFIG: identities are derived as the API server derives them',
  );
  return {
    path: options.path,
    revision: () => issuers.revision,
    identify: (claims) => identifyLogin(issuers, options.loginIssuer, claims),
    isCurrent: (identity) => identity.authnRevision === issuers.revision,
    authenticateBearer: (token) => authenticateBearer(issuers, token),
    issuers: () => issuers.issuers(),
    close() {
      stop();
      issuers.close();
    },
  };
}

/** A session's identity: the login issuer's entry maps the verified ID token's claims. */
function identifyLogin(issuers: IssuerSet, loginIssuer: string, claims: Claims): Identity {
  const a = issuers.authenticator(loginIssuer) as CompiledJwtAuthenticator;
  const refusal = audienceRefusal(a, claims);
  return toIdentity(claims, issuers.revision, refusal ? { refusal } : mapResult(a, claims));
}

/** A bearer token of an issuer in the file: verified with that issuer's keys, mapped with its entry. */
async function authenticateBearer(issuers: IssuerSet, token: string): Promise<BearerAuthentication> {
  const issuer = untrustedIssuer(token);
  const a = issuer === undefined ? undefined : issuers.authenticator(issuer);
  if (!a) return { kind: 'none' };
  let claims: Claims;
  try {
    claims = await issuers.verifier(a).verify(token);
  } catch (error) {
    if (error instanceof TokenRejected) {
      return { kind: 'invalid', detail: error.message, description: error.description };
    }
    throw error;
  }
  const result = mapClaims(a, claims);
  if (!result.ok) {
    const { field, message } = result.refusal;
    return { kind: 'invalid', detail: `${field}: ${message}`, description: message };
  }
  return { kind: 'valid', identity: toIdentity(claims, issuers.revision, result) };
}

function mapResult(
  a: CompiledJwtAuthenticator,
  claims: Claims,
): { user: KubernetesUser } | { refusal: Refusal } {
  const result = mapClaims(a, claims);
  return result.ok ? { user: result.user } : { refusal: result.refusal };
}
