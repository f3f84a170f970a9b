import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { decodeJwt, type JWK } from 'jose';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';
import { type BackchannelAnswer, logoutClaims, postLogoutToken } from './backchannel.ts';
import { DEFAULT_AUTH_METHODS } from './clientAuth.ts';
import { dexClaims, dexSubject, type TokenBody } from './dexShape.ts';
import { DexRefreshShim } from './dexShims.ts';
import { END_SESSION_PATH, handleEndSession } from './endSession.ts';
import { interaction } from './interaction.ts';
import { mint, newSigningKey, type SigningKey, signWith } from './keys.ts';
import { DEX_PROFILE, type StandInProfile } from './profiles.ts';
import { findUserBySub, providerConfiguration } from './provider.ts';
import { MapStore } from './storage.ts';
import { handleRevocation, handleToken } from './tokenEndpoint.ts';
import type { Dex, DexClient, DexCounts, DexOptions, MintOptions } from './types.ts';
import { DEMO_USERS, type DexUser } from './users.ts';
import { sendJson } from './wire.ts';

/**
 * The stand-in itself: the HTTP layer in front of oidc-provider (issuer path, Dex's missing SSO,
 * the token endpoint), the Koa middleware that reshapes oidc-provider's answers per profile, and
 * the admin API tests drive it with (down, failures, key rotation, minted tokens).
 */

type Ctx = KoaContextWithOIDC;

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

export class DexStandIn implements Dex {
  readonly issuer: string;
  readonly port: number;
  readonly jwksUri: string;
  readonly users: DexUser[];
  readonly profile: StandInProfile;
  readonly counts: DexCounts = {
    refreshGrants: 0,
    codeGrants: 0,
    tokenErrors: 0,
    authorizations: 0,
    endSessions: 0,
    revocations: 0,
  };

  private readonly prefix: string;
  private readonly issuerHost: string;
  private readonly idTokenTtl: number;
  private readonly clients: DexClient[];
  private readonly showUsers: boolean;
  private readonly revocation: boolean;
  private readonly store = new MapStore();
  private readonly cookieKeys = [randomBytes(32).toString('base64url')];
  private readonly internalSecrets = new Map<string, string>();
  private readonly shim: DexRefreshShim;
  private keys: SigningKey[];
  private current!: Provider;
  private handler!: ReturnType<Provider['callback']>;
  private server: Server | undefined;
  private down = false;
  private failures = { remaining: 0, status: 500 };
  private nextRefreshSub: string | undefined;
  private clockOffsetMs = 0;

  constructor(opts: DexOptions, port: number, key: SigningKey) {
    this.port = port;
    const host = opts.host ?? '127.0.0.1';
    let path = opts.issuerPath ?? '/';
    if (!path.startsWith('/')) path = `/${path}`;
    this.issuerHost = `${host}:${port}`;
    this.issuer = `http://${this.issuerHost}${path}`;
    this.prefix = path.endsWith('/') ? path.slice(0, -1) : path;
    this.profile = opts.profile ?? DEX_PROFILE;
    this.jwksUri = `http://${this.issuerHost}${this.prefix}/${this.isDex ? 'keys' : 'jwks'}`;
    this.users = opts.users ?? DEMO_USERS.map((u) => ({ ...u, groups: [...u.groups] }));
    this.idTokenTtl = opts.idTokenTtl ?? 86400;
    this.showUsers = opts.showUsers ?? false;
    this.revocation = opts.revocation ?? false;
    this.clients = opts.clients.map((c) => ({ ...c, redirectUris: [...c.redirectUris] }));
    if (this.clients.length === 0) throw new Error('startDex: at least one client is required');
    this.shim = new DexRefreshShim(this.shimHost(), {
      mode: opts.refreshMode ?? 'strict',
      reuseInterval: opts.reuseInterval ?? 0,
      onePerUserClient: opts.oneRefreshTokenPerUserAndClient ?? this.isDex,
      idTokenTtl: this.idTokenTtl,
    });
    this.keys = [key];
    this.build();
  }

  private get isDex(): boolean {
    return this.profile.flavor === 'dex';
  }

  get privateJwk(): JWK {
    return this.signer().jwk;
  }

  get kid(): string {
    return this.signer().kid;
  }

  get provider(): Provider {
    return this.current;
  }

  subjectOf(user: Pick<DexUser, 'userId'>): string {
    return dexSubject(user.userId);
  }

  private signer(): SigningKey {
    const key = this.keys[0];
    if (!key) throw new Error('no signing key');
    return key;
  }

  private reuseNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  private internalSecret(client: DexClient): string {
    if (client.clientSecret) return client.clientSecret;
    let secret = this.internalSecrets.get(client.clientId);
    if (!secret) {
      secret = randomBytes(24).toString('base64url');
      this.internalSecrets.set(client.clientId, secret);
    }
    return secret;
  }

  private shimHost() {
    return {
      provider: () => this.current,
      store: this.store,
      reuseNow: () => this.reuseNow(),
      reissue: (idToken: string) => this.reissue(idToken),
      userExists: (sub: string) => findUserBySub(this.users, sub) !== undefined,
    };
  }

  // ----- provider construction -----

  private build(): void {
    const provider = new Provider(
      this.issuer,
      providerConfiguration({
        store: this.store,
        clients: this.clients,
        internalSecret: (c) => this.internalSecret(c),
        users: () => this.users,
        keys: this.keys,
        cookieKeys: this.cookieKeys,
        prefix: this.prefix,
        idTokenTtl: this.idTokenTtl,
        profile: this.profile,
        revocation: this.revocation,
      }),
    );
    provider.on('server_error', (_ctx, err) => {
      console.error('dex stand-in: server_error', err);
    });
    provider.use((ctx, next) => this.koaMiddleware(ctx as unknown as Ctx, next));
    this.current = provider;
    this.handler = provider.callback();
  }

  // ----- Koa middleware (runs before oidc-provider's router; post-processes its responses) -----

  private async koaMiddleware(ctx: Ctx, next: () => Promise<unknown>): Promise<void> {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)$/.exec(ctx.path);
    if (m?.[1]) {
      await interaction(ctx, m[1], {
        prefix: this.prefix,
        provider: () => this.current,
        users: this.users,
        shownUsers: this.showUsers ? this.users : undefined,
      });
      return;
    }
    await next();
    if (this.isDex) this.dropSessionCookies(ctx);
    if (!Object.hasOwn(ctx, 'oidc')) return;
    const route = ctx.oidc.route;
    if (route === 'discovery' && ctx.body && typeof ctx.body === 'object') {
      ctx.body = this.discovery(ctx.body as Record<string, unknown>);
    } else if ((route === 'authorization' || route === 'resume') && this.isDex) {
      this.stripIssParameter(ctx);
    } else if (route === 'token') {
      await this.afterToken(ctx);
    }
  }

  /** The discovery document as the profile publishes it. */
  private discovery(document: Record<string, unknown>): Record<string, unknown> {
    const body = { ...document };
    const p = this.profile;
    if (this.isDex) delete body['authorization_response_iss_parameter_supported'];
    const methods = p.authMethods ?? DEFAULT_AUTH_METHODS;
    body['token_endpoint_auth_methods_supported'] = [...methods];
    if (methods.includes('private_key_jwt')) {
      body['token_endpoint_auth_signing_alg_values_supported'] = ['RS256', 'PS256', 'ES256', 'EdDSA'];
    }
    if (p.pkce === false) delete body['code_challenge_methods_supported'];
    if (p.scopesSupported) body['scopes_supported'] = [...p.scopesSupported];
    if (p.endSession === 'id_token_hint_required') {
      body['end_session_endpoint'] = `http://${this.issuerHost}${this.prefix}${END_SESSION_PATH}`;
    }
    return body;
  }

  /** Dex keeps no login session; never let oidc-provider's `_session` cookie reach the browser. */
  private dropSessionCookies(ctx: Ctx): void {
    const header = ctx.res.getHeader('set-cookie');
    if (!Array.isArray(header)) return;
    const kept = header.filter((c) => !/^_session(\.|=)/.test(c));
    if (kept.length === header.length) return;
    if (kept.length) ctx.res.setHeader('set-cookie', kept);
    else ctx.res.removeHeader('set-cookie');
  }

  /** Dex sends no RFC 9207 `iss` in the authorization response. */
  private stripIssParameter(ctx: Ctx): void {
    const location = ctx.response.get('location');
    if (!location) return;
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      return;
    }
    if (!url.searchParams.has('iss')) return;
    if (!url.searchParams.has('code') && !url.searchParams.has('error')) return;
    url.searchParams.delete('iss');
    ctx.response.set('location', url.href);
  }

  // ----- token responses -----

  private async afterToken(ctx: Ctx): Promise<void> {
    const params = (ctx.oidc.params ?? {}) as Record<string, unknown>;
    const grantType = params['grant_type'];
    if (ctx.status >= 400) {
      this.afterRefusal(ctx, grantType);
      return;
    }
    if (ctx.status !== 200 || !ctx.body || typeof ctx.body !== 'object') return;
    const clientId = ctx.oidc.client?.clientId ?? '';
    const source =
      grantType === 'refresh_token' ? ctx.oidc.entities.RefreshToken : ctx.oidc.entities.AuthorizationCode;
    const raw = ctx.body as Record<string, unknown>;
    const body = this.isDex
      ? await this.dexBody(raw, { clientId, scope: source?.scope, grantType, code: params['code'] })
      : ({ ...raw } as TokenBody);
    if (grantType === 'refresh_token' && this.profile.idTokenOnRefresh === false) delete body.id_token;
    if (grantType === 'refresh_token' && body.id_token)
      body.id_token = await this.withNextRefreshSub(body.id_token);
    ctx.body = body;
    const grantId = source?.grantId;
    const accountId = source?.accountId;
    if (!grantId || !accountId) return;
    await this.shim.issued({
      grantType,
      clientId,
      grantId,
      accountId,
      presented: params['refresh_token'],
      body,
    });
  }

  /** Dex's codes for refusals; no WWW-Authenticate from Dex; an empty body where the profile says so. */
  private afterRefusal(ctx: Ctx, grantType: unknown): void {
    if (grantType === 'refresh_token' && ctx.body && typeof ctx.body === 'object') {
      const dex = this.shim.dexRefusal((ctx.body as { error?: string }).error);
      if (dex) {
        ctx.status = 400;
        ctx.body = dex;
      }
    }
    if (this.isDex) ctx.remove('www-authenticate');
    if (this.profile.emptyRefusals && ctx.status < 500) ctx.body = '';
  }

  /** Dex-shaped token responses (spec A4): `bearer`, `expires_in` = ID token's life left, no `scope`. */
  private async dexBody(
    raw: Record<string, unknown>,
    info: { clientId: string; scope: unknown; grantType: unknown; code: unknown },
  ): Promise<TokenBody> {
    const accessToken = String(raw['access_token'] ?? '');
    const code = info.grantType === 'authorization_code' ? String(info.code ?? '') : undefined;
    const body: TokenBody = { access_token: accessToken, token_type: 'bearer', expires_in: this.idTokenTtl };
    if (typeof raw['refresh_token'] === 'string') body.refresh_token = raw['refresh_token'];
    if (typeof raw['id_token'] === 'string') {
      const scope = typeof info.scope === 'string' ? info.scope : '';
      const claims = dexClaims(raw['id_token'], { clientId: info.clientId, scope, accessToken, code });
      const idToken = await signWith(this.signer(), claims);
      body.id_token = idToken;
      const exp = decodeJwt(idToken).exp;
      if (typeof exp === 'number') body.expires_in = Math.max(0, exp - Math.floor(Date.now() / 1000));
    }
    return body;
  }

  /** A fresh ID token from the stored one (Dex mints from stored claims without calling the connector). */
  /** The refreshed ID token, re-signed naming another `sub` when issueSubOnNextRefresh asked. */
  private async withNextRefreshSub(idToken: string): Promise<string> {
    const sub = this.nextRefreshSub;
    if (sub === undefined) return idToken;
    this.nextRefreshSub = undefined;
    return signWith(this.signer(), { ...decodeJwt(idToken), sub });
  }

  private async reissue(idToken: string): Promise<string> {
    const payload: Record<string, unknown> = { ...decodeJwt(idToken) };
    const now = Math.floor(Date.now() / 1000);
    payload['iat'] = now;
    payload['exp'] = now + this.idTokenTtl;
    delete payload['c_hash'];
    return this.withNextRefreshSub(await signWith(this.signer(), payload));
  }

  // ----- HTTP layer -----

  /** The issuer path mounted like Dex's; false when the request is outside it (404 sent). */
  private mount(req: IncomingMessage & { originalUrl?: string }, res: ServerResponse): string | undefined {
    const original = req.url ?? '/';
    const qIndex = original.indexOf('?');
    const pathname = qIndex === -1 ? original : original.slice(0, qIndex);
    if (this.prefix) {
      if (pathname !== this.prefix && !pathname.startsWith(`${this.prefix}/`)) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('404 page not found\n');
        return undefined;
      }
      req.url = original.slice(this.prefix.length) || '/';
      if (req.url.startsWith('?')) req.url = `/${req.url}`;
    }
    // Endpoints in discovery and redirects are derived from the issuer, as in Dex.
    req.headers.host = this.issuerHost;
    return pathname.slice(this.prefix.length) || '/';
  }

  private async onRequest(
    req: IncomingMessage & { originalUrl?: string },
    res: ServerResponse,
  ): Promise<void> {
    if (this.down) {
      req.socket.destroy();
      return;
    }
    const path = this.mount(req, res);
    if (path === undefined) return;
    if (req.method === 'GET' && path === '/auth') {
      this.counts.authorizations++;
      req.url = this.rewriteAuthorizationUrl(req.url ?? '/');
    }
    if (this.isDex && req.method === 'GET' && (path === '/auth' || path.startsWith('/auth/'))) {
      this.forgetLoginSession(req);
    }
    // oidc-provider derives its mount path from originalUrl minus url (like an Express mount).
    if (this.prefix) req.originalUrl = `${this.prefix}${req.url ?? '/'}`;
    if (req.method === 'POST' && path === '/token') {
      await handleToken(this.tokenHost(), req, res);
      return;
    }
    if (req.method === 'POST' && path === '/token/revocation' && this.revocation) {
      await handleRevocation(this.tokenHost(), req, res);
      return;
    }
    if (
      req.method === 'GET' &&
      path === END_SESSION_PATH &&
      this.profile.endSession === 'id_token_hint_required'
    ) {
      await handleEndSession(this.endSessionHost(), req, res);
      return;
    }
    await this.handler(req, res);
  }

  /**
   * Dex has no SSO session: every authorization request (and its resume) starts from scratch, even in
   * the same browser, as if oidc-provider's `_session` cookie had never been set.
   */
  private forgetLoginSession(req: IncomingMessage): void {
    const cookie = req.headers.cookie;
    if (!cookie) return;
    const kept = cookie
      .split(';')
      .map((c) => c.trim())
      .filter((c) => c && !/^_session(\.|=)/.test(c));
    if (kept.length) req.headers.cookie = kept.join('; ');
    else delete req.headers.cookie;
  }

  /**
   * Dex has no SSO (every /auth shows the login form) and issues refresh tokens for `offline_access`
   * without `prompt=consent`; oidc-provider needs `prompt=login consent` for the same behaviour. A
   * profile without PKCE ignores the challenge, as a provider that does not know PKCE would.
   */
  private rewriteAuthorizationUrl(url: string): string {
    const u = new URL(url, 'http://x');
    if (this.profile.pkce === false) {
      u.searchParams.delete('code_challenge');
      u.searchParams.delete('code_challenge_method');
    }
    const prompts = new Set((u.searchParams.get('prompt') ?? '').split(' ').filter(Boolean));
    if (this.isDex && !prompts.has('none')) {
      prompts.add('login');
      const scopes = (u.searchParams.get('scope') ?? '').split(' ');
      if (scopes.includes('offline_access')) prompts.add('consent');
      u.searchParams.set('prompt', [...prompts].join(' '));
    }
    return `${u.pathname}${u.search}`;
  }

  private tokenHost() {
    const base = `http://${this.issuerHost}${this.prefix}`;
    return {
      counts: this.counts,
      clients: this.clients,
      profile: this.profile,
      issuerHost: this.issuerHost,
      assertionAudiences: [this.issuer, `${base}/token`],
      shim: this.shim,
      internalSecret: (c: DexClient) => this.internalSecret(c),
      takeFailure: () => {
        if (this.failures.remaining <= 0) return undefined;
        this.failures.remaining--;
        return this.failures.status;
      },
      handler: (req: IncomingMessage, res: ServerResponse) => this.handler(req, res),
    };
  }

  private endSessionHost() {
    return {
      issuer: this.issuer,
      clients: this.clients,
      counts: this.counts,
      publicKeys: () =>
        this.keys.map((k) => {
          const jwk: Record<string, unknown> = { ...k.jwk };
          for (const member of PRIVATE_JWK_MEMBERS) delete jwk[member];
          return jwk as JWK;
        }),
    };
  }

  // ----- lifecycle and admin API (what tests drive) -----

  async start(): Promise<void> {
    if (this.server?.listening) return;
    const server = createServer((req, res) => {
      this.onRequest(req, res).catch((err: unknown) => {
        console.error('dex stand-in: request failed', err);
        if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  setDown(down: boolean): void {
    this.down = down;
  }

  failNextRefreshes(n: number, status: number): void {
    this.failures = { remaining: n, status };
  }

  issueSubOnNextRefresh(sub: string): void {
    this.nextRefreshSub = sub;
  }

  advanceReuseClock(seconds: number): void {
    this.clockOffsetMs += seconds * 1000;
  }

  async rotateKeys(): Promise<void> {
    const key = await newSigningKey();
    this.keys = [key, ...this.keys];
    this.build();
  }

  mintIdToken(claims: Record<string, unknown>, opts: MintOptions = {}): Promise<string> {
    const defaults = { issuer: this.issuer, audience: this.clients[0]?.clientId, ttl: this.idTokenTtl };
    return mint(this.signer(), defaults, claims, opts);
  }

  async sendBackchannelLogout(
    uri: string,
    claims: Record<string, unknown>,
    opts: MintOptions = {},
  ): Promise<BackchannelAnswer & { token: string }> {
    const token = await this.mintIdToken(logoutClaims(claims), { expiresIn: 120, ...opts });
    return { ...(await postLogoutToken(uri, token)), token };
  }

  async close(): Promise<void> {
    await this.stop();
  }
}
