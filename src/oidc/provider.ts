import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { authorizationUrl } from './authorizationUrl.ts';
import { type Discovered, discover } from './discover.ts';
import { endSessionUrl } from './endSessionUrl.ts';
import { providerUnavailable, RefreshError } from './errors.ts';
import { exchangeCode } from './exchangeCode.ts';
import { type LogoutToken, verifyLogoutToken } from './logoutToken.ts';
import { refresh } from './refresh.ts';
import { revokeRefreshToken } from './revoke.ts';
import { type Observe, Transport } from './transport.ts';
import { Turns } from './turns.ts';
import type {
  AuthorizationRequest,
  BearerVerifyOptions,
  EndSessionRequest,
  IdClaims,
  OidcProvider,
  ProviderCall,
  ProviderProfile,
  RefreshResult,
  TokenResult,
} from './types.ts';
import { verifyBearer, verifyIdToken } from './verify.ts';

/**
 * The only importer of openid-client (STYLE: one owner per library), as protocol verbs: discover,
 * authorizationUrl, exchangeCode, refresh, revokeRefreshToken, verifyIdToken (and verifyBearer),
 * endSessionUrl — one
 * small module each; this class keeps discovery alive and hands each verb what it found. Every
 * lower-level error becomes AppError or RefreshError inside those modules (errors.ts).
 */

export { newLoginSecrets } from './authorizationUrl.ts';
export { classifyRefreshError, RefreshError } from './errors.ts';
export type * from './types.ts';

export interface OidcProviderOptions {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  /** Per-call timeout for provider requests, ms. */
  readonly timeoutMs?: number;
  /** Token-endpoint calls at once (default MAX_CONCURRENT_TOKEN_CALLS). */
  readonly maxConcurrentTokenCalls?: number;
  /** Least time between two JWKS fetches for an unknown `kid`, ms (default 30 s). */
  readonly jwksCooldownMs?: number;
  /** Told about every HTTP round trip to the provider (metrics). */
  readonly observe?: Observe;
}

const MAX_BACKOFF_MS = 30_000;

/** Token-endpoint calls (code exchanges, refresh grants) one replica makes at once; more wait their turn. */
export const MAX_CONCURRENT_TOKEN_CALLS = 16;
/** An impatient refresh that got no turn within the call timeout: failed as a timed-out call does. */
const NO_TURN = () =>
  new RefreshError(
    'transient',
    'the provider is busy: no turn at its token endpoint within the call timeout',
  );

export class OidcClient implements OidcProvider {
  readonly issuer: string;
  readonly #options: OidcProviderOptions;
  readonly #transport: Transport;
  /** Turns at the token endpoint (turns.ts): a refresh storm never times out calls the provider granted. */
  readonly #tokenCalls: Turns;
  #discovered: Discovered | undefined;
  #inflight: Promise<Discovered | undefined> | undefined;
  #lastAttempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #backoff = 1_000;
  #closed = false;
  /** Why the last discovery failed, for the detail of the 503s meanwhile. */
  #lastFailure = 'not tried yet';
  #probe: { ok: boolean; until: number; at: number } | undefined;
  #probing: Promise<boolean> | undefined;

  constructor(options: OidcProviderOptions) {
    this.#options = options;
    this.issuer = options.config.issuerUrl;
    this.#transport = new Transport(options.observe, () => options.clock.now());
    this.#tokenCalls = new Turns(options.maxConcurrentTokenCalls ?? MAX_CONCURRENT_TOKEN_CALLS);
    void this.#ensure();
  }

  get #config(): Config {
    return this.#options.config;
  }

  status(): 'ready' | 'unavailable' {
    if (!this.#discovered) return 'unavailable';
    return this.#transport.last?.result === 'error' ? 'unavailable' : 'ready';
  }

  lastCall(): ProviderCall | undefined {
    return this.#transport.last;
  }

  profile(): ProviderProfile | undefined {
    return this.#discovered?.profile;
  }

  // ---- discovery, in the background, retried with back-off (1 s → 30 s) ---------------------

  async #discover(): Promise<Discovered | undefined> {
    this.#lastAttempt = this.#options.clock.now();
    try {
      const discovered = await discover({
        config: this.#config,
        log: this.#options.log,
        transport: this.#transport,
        timeoutMs: this.#options.timeoutMs ?? 10_000,
        jwksCooldownMs: this.#options.jwksCooldownMs ?? 30_000,
      });
      this.#discovered = discovered;
      this.#backoff = 1_000;
      this.#announce(discovered.profile);
      return discovered;
    } catch (error) {
      this.#lastFailure = describeError(error);
      this.#options.log.warn(
        { issuer: this.issuer, err: { message: this.#lastFailure }, retryInMs: this.#backoff },
        'oidc discovery failed; will retry',
      );
      this.#scheduleRetry();
      return undefined;
    }
  }

  /** Once, at the first successful discovery: what was found, and the scopes it does not list. */
  #announce(profile: ProviderProfile): void {
    const { log } = this.#options;
    log.info(
      {
        issuer: this.issuer,
        provider: profile.name,
        tokenAuthMethod: profile.tokenAuthMethod,
        pkce: profile.pkce,
        endSession: profile.endSessionEndpoint !== undefined,
      },
      'oidc provider discovered',
    );
    if (profile.unlistedScopes.length > 0) {
      log.warn(
        { scopes: profile.unlistedScopes },
        `OIDC_SCOPES asks for ${profile.unlistedScopes.join(', ')}, which ${profile.name} does not list in scopes_supported; sent anyway (providers often accept unlisted scopes, some refuse the login)`,
      );
    }
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#discovered) void this.#ensure();
    }, this.#backoff);
    this.#retryTimer.unref();
    this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF_MS);
  }

  #ensure(): Promise<Discovered | undefined> {
    if (this.#discovered) return Promise.resolve(this.#discovered);
    this.#inflight ??= this.#discover().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /** What discovery found, trying again on demand at most once a second; else a 503. */
  async #ready(): Promise<Discovered> {
    const due = this.#inflight || this.#options.clock.now() - this.#lastAttempt >= 1_000;
    const d = this.#discovered ?? (due ? await this.#ensure() : undefined);
    if (!d) throw providerUnavailable(`oidc discovery has not succeeded: ${this.#lastFailure}`);
    return d;
  }

  /**
   * A cached GET of the discovery document: 5 s after an answer, 1 s after a failure — unless a
   * call to the provider has failed since, which asks again at once.
   */
  reachable(): Promise<boolean> {
    const now = this.#options.clock.now();
    const last = this.#transport.last;
    const probe = this.#probe;
    const failedSince = probe?.ok === true && last?.result === 'error' && last.at > probe.at;
    if (probe && probe.until > now && !failedSince) return Promise.resolve(probe.ok);
    const url = `${this.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    this.#probing ??= this.#transport
      .fetch('probe')(url, { signal: AbortSignal.timeout(2_000), redirect: 'manual' })
      .then(
        async (response) => {
          await response.body?.cancel();
          return response.status === 200;
        },
        () => false,
      )
      .then((ok) => {
        const at = this.#options.clock.now();
        this.#probe = { ok, until: at + (ok ? 5_000 : 1_000), at };
        this.#probing = undefined;
        return ok;
      });
    return this.#probing;
  }

  // ---- the verbs ------------------------------------------------------------------------------

  async authorizationUrl(request: AuthorizationRequest): Promise<string> {
    return authorizationUrl(await this.#ready(), this.#config, request);
  }

  async exchangeCode(callbackUrl: URL, request: AuthorizationRequest): Promise<TokenResult> {
    const d = await this.#ready();
    return this.#tokenCalls.run(() =>
      exchangeCode(d, this.#config, this.#options.clock, callbackUrl, request),
    );
  }

  async refresh(
    refreshToken: string,
    options: { readonly impatient?: boolean } = {},
  ): Promise<RefreshResult> {
    const d = await this.#ready().catch(() => {
      throw new RefreshError('transient', 'provider not discovered');
    });
    const call = () => refresh(d, this.#config, this.#options.clock, refreshToken);
    if (!options.impatient) return this.#tokenCalls.run(call);
    return this.#tokenCalls.run(call, this.#options.timeoutMs ?? 10_000, NO_TURN);
  }

  async revokeRefreshToken(refreshToken: string): Promise<'revoked' | 'spent' | 'refused'> {
    const d = await this.#ready().catch(() => {
      throw new RefreshError('transient', 'provider not discovered');
    });
    return revokeRefreshToken(d, refreshToken);
  }

  async verifyIdToken(idToken: string, expectedNonce?: string): Promise<IdClaims> {
    return verifyIdToken(await this.#ready(), this.#config, this.#options.clock, idToken, expectedNonce);
  }

  async verifyBearer(token: string, options: BearerVerifyOptions): Promise<IdClaims> {
    return verifyBearer(await this.#ready(), this.#config, this.#options.clock, token, options);
  }

  async verifyLogoutToken(token: string): Promise<LogoutToken> {
    return verifyLogoutToken(await this.#ready(), this.#config, this.#options.clock, token);
  }

  endSessionEndpoint(): string | undefined {
    return this.#discovered?.profile.endSessionEndpoint;
  }

  endSessionUrl(request: EndSessionRequest): string | undefined {
    return this.#discovered ? endSessionUrl(this.#discovered, request) : undefined;
  }

  close(): void {
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
  }
}

export function createOidcProvider(options: OidcProviderOptions): OidcProvider {
  return new OidcClient(options);
}
