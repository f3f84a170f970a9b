import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import {
  DEMO_USERS,
  type Dex,
  type DexOptions,
  type DexUser,
  dexSubject,
  PROFILES,
  startDex,
} from '../support/dex.ts';
import { freePort } from '../support/ports.ts';

const CLIENT_ID = 'fwd-auth';
const CLIENT_SECRET = 'fwd-auth-secret';

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  userinfo_endpoint?: string;
  end_session_endpoint?: string;
  authorization_response_iss_parameter_supported?: boolean;
  token_endpoint_auth_methods_supported?: string[];
}

interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token?: string;
  id_token?: string;
  error?: string;
  error_description?: string;
}

function user(login: string): DexUser {
  const found = DEMO_USERS.find((u) => u.login === login);
  if (!found) throw new Error(`no demo user ${login}`);
  return found;
}

let rp: Server;
let redirectUri: string;
const started: Dex[] = [];

beforeAll(async () => {
  // A stand-in relying party that just acknowledges the callback.
  const port = await freePort();
  rp = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('callback ok');
  });
  await new Promise<void>((resolve) => rp.listen(port, '127.0.0.1', resolve));
  redirectUri = `http://app.localhost:${port}/callback`;
});

afterAll(async () => {
  await Promise.all(started.map((d) => d.close()));
  await new Promise<void>((resolve) => rp.close(() => resolve()));
});

async function dexWith(opts: Partial<DexOptions> = {}): Promise<Dex> {
  const dex = await startDex({
    clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [redirectUri] }],
    ...opts,
  });
  started.push(dex);
  return dex;
}

/** Node cannot resolve `*.localhost`; the stand-in listens on 127.0.0.1 whatever its issuer host is. */
function viaLoopback(url: string): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  return u.href;
}

async function discover(dex: Dex): Promise<Discovery> {
  const base = dex.issuer.endsWith('/') ? dex.issuer : `${dex.issuer}/`;
  const res = await fetch(viaLoopback(new URL('.well-known/openid-configuration', base).href));
  expect(res.status).toBe(200);
  return (await res.json()) as Discovery;
}

function basic(id = CLIENT_ID, secret = CLIENT_SECRET): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

async function tokenRequest(
  dex: Dex,
  form: Record<string, string>,
  auth: 'basic' | 'post' = 'basic',
): Promise<{ status: number; body: TokenResponse; headers: Headers }> {
  const d = await discover(dex);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  const params = new URLSearchParams(form);
  if (auth === 'basic') headers['authorization'] = basic();
  else {
    params.set('client_id', CLIENT_ID);
    params.set('client_secret', CLIENT_SECRET);
  }
  const res = await fetch(viaLoopback(d.token_endpoint), { method: 'POST', headers, body: params });
  return { status: res.status, body: (await res.json()) as TokenResponse, headers: res.headers };
}

function refresh(dex: Dex, refreshToken: string) {
  return tokenRequest(dex, { grant_type: 'refresh_token', refresh_token: refreshToken });
}

interface LoginResult {
  code: string;
  callback: URL;
  nonce: string;
  tokens: TokenResponse;
  chainStatuses: number[];
}

async function login(
  dex: Dex,
  who: { login: string; password: string },
  opts: { scope?: string; auth?: 'basic' | 'post' } = {},
): Promise<LoginResult> {
  const d = await discover(dex);
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(16).toString('base64url');
  const nonce = randomBytes(16).toString('base64url');
  const auth = new URL(d.authorization_endpoint);
  auth.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectUri,
    scope: opts.scope ?? 'openid email profile groups offline_access',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  const browser = new Browser({ navigation: true }); // fresh jar per login: Dex has no SSO
  const { final, chain } = await loginThroughDex(browser, auth.href, who);
  expect(final.status).toBe(200);
  const callback = new URL(final.url);
  expect(callback.origin + callback.pathname).toBe(redirectUri);
  expect(callback.searchParams.get('state')).toBe(state);
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code in ${callback.href}`);
  const res = await tokenRequest(
    dex,
    { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier },
    opts.auth,
  );
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return { code, callback, nonce, tokens: res.body, chainStatuses: chain.map((r) => r.status) };
}

describe('Dex stand-in discovery and keys', () => {
  it('publishes the issuer exactly with its trailing slash, /keys and no end_session_endpoint', async () => {
    const dex = await dexWith();
    const d = await discover(dex);
    expect(d.issuer).toBe(`http://127.0.0.1:${dex.port}/`);
    expect(d.issuer).toBe(dex.issuer);
    expect(d.jwks_uri).toBe(`http://127.0.0.1:${dex.port}/keys`);
    expect(d.jwks_uri).toBe(dex.jwksUri);
    expect(d.token_endpoint).toBe(`http://127.0.0.1:${dex.port}/token`);
    expect(d.userinfo_endpoint).toBe(`http://127.0.0.1:${dex.port}/userinfo`);
    expect(d.end_session_endpoint).toBeUndefined();
    expect(d.authorization_response_iss_parameter_supported).toBeUndefined();
    expect(d.token_endpoint_auth_methods_supported).toEqual(['client_secret_basic', 'client_secret_post']);

    const jwks = (await (await fetch(d.jwks_uri)).json()) as {
      keys: { kid: string; alg: string; kty: string }[];
    };
    expect(jwks.keys.map((k) => k.kid)).toEqual([dex.kid]);
    expect(dex.kid).toMatch(/^[0-9a-f]{40}$/);
    expect(jwks.keys[0]?.kty).toBe('RSA');
  });

  it('mounts everything under the issuer path when one is configured', async () => {
    const dex = await dexWith({ issuerPath: '/dex', host: 'dex.localhost' });
    const res = await fetch(`http://127.0.0.1:${dex.port}/dex/.well-known/openid-configuration`);
    const d = (await res.json()) as Discovery;
    expect(d.issuer).toBe(`http://dex.localhost:${dex.port}/dex`);
    expect(d.jwks_uri).toBe(`http://dex.localhost:${dex.port}/dex/keys`);
    expect(d.authorization_endpoint).toBe(`http://dex.localhost:${dex.port}/dex/auth`);
    expect((await fetch(`http://127.0.0.1:${dex.port}/.well-known/openid-configuration`)).status).toBe(404);

    const result = await login(dex, user('dev@example.com'));
    expect(decodeJwt(result.tokens.id_token ?? '').iss).toBe(`http://dex.localhost:${dex.port}/dex`);
  });

  it('rotates keys like Dex: the new key signs at once and the old one stays published', async () => {
    const dex = await dexWith();
    const oldKid = dex.kid;
    const first = await login(dex, user('dev@example.com'));
    expect(decodeProtectedHeader(first.tokens.id_token ?? '').kid).toBe(oldKid);
    await dex.rotateKeys();
    expect(dex.kid).not.toBe(oldKid);
    const jwks = (await (await fetch(dex.jwksUri)).json()) as { keys: { kid: string }[] };
    expect(jwks.keys.map((k) => k.kid)).toEqual([dex.kid, oldKid]);
    const refreshed = await refresh(dex, first.tokens.refresh_token ?? '');
    expect(refreshed.status).toBe(200);
    expect(decodeProtectedHeader(refreshed.body.id_token ?? '').kid).toBe(dex.kid);
  });

  it('mints tokens with its own key for negative tests', async () => {
    const dex = await dexWith();
    const jwks = createRemoteJWKSet(new URL(dex.jwksUri));
    const token = await dex.mintIdToken({ sub: 'x', aud: ['kubernetes', CLIENT_ID], azp: CLIENT_ID });
    const { payload } = await jwtVerify(token, jwks, { issuer: dex.issuer, audience: 'kubernetes' });
    expect(payload.azp).toBe(CLIENT_ID);
    const noExp = await dex.mintIdToken({ sub: 'x', exp: undefined });
    expect(decodeJwt(noExp).exp).toBeUndefined();
    const es = await dex.mintIdToken({ sub: 'x' }, { alg: 'ES256' });
    expect(decodeProtectedHeader(es).alg).toBe('ES256');
  });
});

describe('Dex stand-in login and ID tokens', () => {
  it('runs a PKCE S256 code flow for admin and returns a Dex-shaped ID token', async () => {
    const dex = await dexWith();
    const admin = user('admin@example.com');
    const result = await login(dex, admin);
    // auth -> 303 interaction form (200), POST -> 303 resume -> 303 callback -> 200
    expect(result.chainStatuses).toEqual([303, 200, 303, 303, 200]);
    expect(result.callback.searchParams.has('iss')).toBe(false);

    const t = result.tokens;
    expect(t.token_type).toBe('bearer');
    expect(t.refresh_token).toBeTruthy();
    expect(t.expires_in).toBeGreaterThan(86400 - 10);
    expect(t.expires_in).toBeLessThanOrEqual(86400);

    const jwks = createRemoteJWKSet(new URL(dex.jwksUri));
    const { payload, protectedHeader } = await jwtVerify(t.id_token ?? '', jwks, {
      issuer: dex.issuer,
      audience: CLIENT_ID,
      algorithms: ['RS256'],
    });
    expect(protectedHeader).toEqual({ alg: 'RS256', kid: dex.kid });
    expect(payload.sub).toBe(dexSubject(admin.userId));
    expect(Buffer.from(payload.sub ?? '', 'base64url').toString('latin1')).toContain('local');
    expect(payload.aud).toBe(CLIENT_ID);
    expect(payload.azp).toBeUndefined();
    expect(payload.email).toBe('admin@example.com');
    expect(payload.email_verified).toBe(true);
    expect(payload.groups).toEqual(['admins', 'engineering']);
    expect(payload.name).toBe('admin');
    expect(payload.nonce).toBe(result.nonce);
    expect(payload.at_hash).toBeTypeOf('string');
    expect(payload.c_hash).toBeTypeOf('string');
    expect(payload.auth_time).toBeUndefined();
    expect(payload.sid).toBeUndefined();

    const ui = await fetch((await discover(dex)).userinfo_endpoint ?? '', {
      headers: { authorization: `Bearer ${t.access_token}` },
    });
    expect(ui.status).toBe(200);
    expect(((await ui.json()) as { email?: string }).email).toBe('admin@example.com');
  });

  it('answers a wrong password with 401 and the login form again', async () => {
    const dex = await dexWith();
    const d = await discover(dex);
    const auth = `${d.authorization_endpoint}?${new URLSearchParams({
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: redirectUri,
      scope: 'openid email',
      state: 's',
    })}`;
    const { final } = await loginThroughDex(new Browser({ navigation: true }), auth, {
      login: 'admin@example.com',
      password: 'wrong',
    });
    expect(final.status).toBe(401);
    expect(final.headers.get('content-type')).toMatch(/text\/html/);
    expect(final.body).toContain('name="login"');
    expect(final.body).toContain('name="password"');
    expect(final.body).toContain('type="submit"');
    expect(final.body).toContain('Invalid Email Address and password.');
  });

  it('asks for the password again on every login in the same browser, like Dex without SSO', async () => {
    const dex = await dexWith();
    const d = await discover(dex);
    const browser = new Browser({ navigation: true });
    const auth = `${d.authorization_endpoint}?${new URLSearchParams({
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: redirectUri,
      scope: 'openid email offline_access',
      state: 's',
    })}`;
    for (const who of ['dev@example.com', 'admin@example.com']) {
      const { final, chain } = await loginThroughDex(browser, auth, user(who));
      expect(chain.map((r) => r.status)).toEqual([303, 200, 303, 303, 200]);
      const code = new URL(final.url).searchParams.get('code') ?? '';
      const res = await tokenRequest(dex, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: redirectUri,
      });
      expect(decodeJwt(res.body.id_token ?? '').email).toBe(who);
    }
    expect(browser.cookies(`${dex.issuer}auth/x`).map((c) => c.name)).not.toContain('_session');
  });

  it('reports email_verified false for the unverified user', async () => {
    const dex = await dexWith();
    const { tokens } = await login(dex, user('unverified@example.com'));
    const payload = decodeJwt(tokens.id_token ?? '');
    expect(payload.email).toBe('unverified@example.com');
    expect(payload.email_verified).toBe(false);
  });

  it('puts all 150 groups of the many-groups user into the ID token', async () => {
    const dex = await dexWith();
    const many = user('many@example.com');
    expect(many.groups.length).toBe(150);
    const { tokens } = await login(dex, many);
    const groups = decodeJwt(tokens.id_token ?? '').groups as string[];
    expect(groups).toEqual(many.groups);
    expect(groups).toContain('team-platform-observability-000');
  });

  it('leaves out the refresh token when offline_access is not requested', async () => {
    const dex = await dexWith();
    const { tokens } = await login(dex, user('dev@example.com'), { scope: 'openid email groups' });
    expect(tokens.refresh_token).toBeUndefined();
    expect(decodeJwt(tokens.id_token ?? '').groups).toEqual(['engineering']);
  });

  it('gives an array aud and azp for the cross-client kubernetes audience scope', async () => {
    const dex = await dexWith();
    const { tokens } = await login(dex, user('dev@example.com'), {
      scope: 'openid email groups offline_access audience:server:client_id:kubernetes',
    });
    const jwks = createRemoteJWKSet(new URL(dex.jwksUri));
    const { payload } = await jwtVerify(tokens.id_token ?? '', jwks, {
      issuer: dex.issuer,
      audience: 'kubernetes',
    });
    expect(payload.aud).toEqual(['kubernetes', CLIENT_ID]);
    expect(payload.azp).toBe(CLIENT_ID);
    const refreshed = await refresh(dex, tokens.refresh_token ?? '');
    expect(decodeJwt(refreshed.body.id_token ?? '').aud).toEqual(['kubernetes', CLIENT_ID]);
  });

  it('accepts client_secret_post as well as basic and rejects a bad secret like Dex', async () => {
    const dex = await dexWith();
    const { tokens } = await login(dex, user('dev@example.com'), { auth: 'post' });
    expect(tokens.id_token).toBeTruthy();
    const d = await discover(dex);
    const res = await fetch(d.token_endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: basic(CLIENT_ID, 'nope'),
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token ?? '' }),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({
      error: 'invalid_client',
      error_description: 'Invalid client credentials.',
    });
  });
});

describe('Dex stand-in refresh tokens', () => {
  it('rotates the refresh token on every refresh and issues a fresh ID token with the original nonce', async () => {
    const dex = await dexWith();
    const first = await login(dex, user('admin@example.com'));
    const rt0 = first.tokens.refresh_token ?? '';
    const r1 = await refresh(dex, rt0);
    expect(r1.status).toBe(200);
    expect(r1.body.refresh_token).toBeTruthy();
    expect(r1.body.refresh_token).not.toBe(rt0);
    const payload = decodeJwt(r1.body.id_token ?? '');
    expect(payload.nonce).toBe(first.nonce);
    expect(payload.groups).toEqual(['admins', 'engineering']);
    expect(payload.c_hash).toBeUndefined();
    expect(dex.counts.refreshGrants).toBe(1);
    expect(dex.counts.codeGrants).toBe(1);
  });

  it('in strict mode answers a reused refresh token with invalid_grant and revokes the new one too', async () => {
    const dex = await dexWith({ refreshMode: 'strict' });
    const { tokens } = await login(dex, user('dev@example.com'));
    const rt0 = tokens.refresh_token ?? '';
    const r1 = await refresh(dex, rt0);
    expect(r1.status).toBe(200);
    const again = await refresh(dex, rt0);
    expect(again.status).toBe(400);
    expect(again.body.error).toBe('invalid_grant');
    const rt1 = await refresh(dex, r1.body.refresh_token ?? '');
    expect(rt1.status).toBe(400);
    expect(rt1.body.error).toBe('invalid_grant');
    expect(dex.counts.tokenErrors).toBe(2);
  });

  it('in dex mode with a 5 s reuse window returns the same new refresh token for the old one', async () => {
    const dex = await dexWith({ refreshMode: 'dex', reuseInterval: 5 });
    const first = await login(dex, user('dev@example.com'));
    const rt0 = first.tokens.refresh_token ?? '';

    // Within the window of the login, Dex hands back the current token unchanged.
    const early = await refresh(dex, rt0);
    expect(early.status).toBe(200);
    expect(early.body.refresh_token).toBe(rt0);

    dex.advanceReuseClock(6);
    const r1 = await refresh(dex, rt0);
    expect(r1.status).toBe(200);
    const rt1 = r1.body.refresh_token ?? '';
    expect(rt1).not.toBe(rt0);

    const replay = await refresh(dex, rt0);
    expect(replay.status).toBe(200);
    expect(replay.body.refresh_token).toBe(rt1);
    expect(replay.body.token_type).toBe('bearer');
    const payload = decodeJwt(replay.body.id_token ?? '');
    expect(payload.nonce).toBe(first.nonce);
    expect(payload.email).toBe('dev@example.com');
    await jwtVerify(replay.body.id_token ?? '', createRemoteJWKSet(new URL(dex.jwksUri)), {
      issuer: dex.issuer,
      audience: CLIENT_ID,
    });

    // Outside the window the old token is dead, but the current one still works (no family revocation).
    dex.advanceReuseClock(6);
    const late = await refresh(dex, rt0);
    expect(late.status).toBe(400);
    expect(late.body.error).toBe('invalid_request');
    const r2 = await refresh(dex, rt1);
    expect(r2.status).toBe(200);
    expect(r2.body.refresh_token).not.toBe(rt1);
  });

  it('in dex mode without a reuse window answers the old refresh token with Dex invalid_request', async () => {
    const dex = await dexWith({ refreshMode: 'dex' });
    const { tokens } = await login(dex, user('dev@example.com'));
    const rt0 = tokens.refresh_token ?? '';
    const r1 = await refresh(dex, rt0);
    expect(r1.status).toBe(200);
    const again = await refresh(dex, rt0);
    expect(again.status).toBe(400);
    expect(again.body).toEqual({
      error: 'invalid_request',
      error_description: 'Refresh token is invalid or has already been claimed by another client.',
    });
    const r2 = await refresh(dex, r1.body.refresh_token ?? '');
    expect(r2.status).toBe(200);
  });

  it('in dex mode gives concurrent refreshes with one token the same new token inside the window', async () => {
    const dex = await dexWith({ refreshMode: 'dex', reuseInterval: 120 });
    const { tokens } = await login(dex, user('dev@example.com'));
    dex.advanceReuseClock(121);
    const results = await Promise.all([1, 2, 3].map(() => refresh(dex, tokens.refresh_token ?? '')));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(new Set(results.map((r) => r.body.refresh_token)).size).toBe(1);
  });

  it('kills the refresh token of the first login when the same user logs in again', async () => {
    const dex = await dexWith();
    const a = await login(dex, user('admin@example.com'));
    const other = await login(dex, user('dev@example.com'));
    const b = await login(dex, user('admin@example.com'));
    const dead = await refresh(dex, a.tokens.refresh_token ?? '');
    expect(dead.status).toBe(400);
    expect((await refresh(dex, b.tokens.refresh_token ?? '')).status).toBe(200);
    expect((await refresh(dex, other.tokens.refresh_token ?? '')).status).toBe(200);
  });

  it('keeps both grants when one refresh token per user and client is switched off', async () => {
    const dex = await dexWith({ oneRefreshTokenPerUserAndClient: false });
    const a = await login(dex, user('admin@example.com'));
    await login(dex, user('admin@example.com'));
    expect((await refresh(dex, a.tokens.refresh_token ?? '')).status).toBe(200);
  });

  it('fails the next refreshes with the requested status and then recovers', async () => {
    const dex = await dexWith();
    const { tokens } = await login(dex, user('dev@example.com'));
    dex.failNextRefreshes(1, 500);
    const failed = await refresh(dex, tokens.refresh_token ?? '');
    expect(failed.status).toBe(500);
    expect(failed.body).toEqual({ error: 'invalid_request' });
    const ok = await refresh(dex, tokens.refresh_token ?? '');
    expect(ok.status).toBe(200);
    expect(dex.counts.refreshGrants).toBe(2);
    expect(dex.counts.tokenErrors).toBe(1);
  });

  it('keeps grants across stop() and start() on the same port', async () => {
    const dex = await dexWith();
    const { tokens } = await login(dex, user('dev@example.com'));
    await dex.stop();
    await expect(fetch(dex.jwksUri)).rejects.toThrow();
    await dex.start();
    const ok = await refresh(dex, tokens.refresh_token ?? '');
    expect(ok.status).toBe(200);
  });

  it('drops connections while set down', async () => {
    const dex = await dexWith();
    dex.setDown(true);
    await expect(fetch(dex.jwksUri)).rejects.toThrow();
    dex.setDown(false);
    expect((await fetch(dex.jwksUri)).status).toBe(200);
  });
});

describe('Stand-in provider profiles', () => {
  it('a generic profile publishes oidc-provider’s own layout, not Dex’s, and says what the profile says', async () => {
    const generic = await dexWith({ profile: PROFILES.minimalClaims });
    const d = (await discover(generic)) as Discovery & Record<string, unknown>;
    expect(d.jwks_uri).toBe(`${generic.issuer}jwks`);
    expect(d['code_challenge_methods_supported']).toBeUndefined();
    expect(d['scopes_supported']).toEqual(PROFILES.minimalClaims.scopesSupported);
    expect(d.end_session_endpoint).toBeUndefined();
    const hint = (await discover(await dexWith({ profile: PROFILES.logoutHint }))) as Discovery;
    expect(hint.end_session_endpoint).toMatch(/\/session\/end$/);
    const post = (await discover(await dexWith({ profile: PROFILES.postOnly }))) as Discovery;
    expect(post.token_endpoint_auth_methods_supported).toEqual(['client_secret_post']);
  });

  it('a post-only profile refuses Basic credentials; a non-decoding one compares them as sent', async () => {
    const post = await dexWith({ profile: PROFILES.postOnly });
    const tokens = (await login(post, user('admin@example.com'), { auth: 'post' })).tokens;
    expect((await refresh(post, tokens.refresh_token!)).status).toBe(401);
    const secret = 'a+b%c:d-e';
    const raw = await dexWith({
      profile: PROFILES.undecodedBasic,
      clients: [{ clientId: CLIENT_ID, clientSecret: secret, redirectUris: [redirectUri] }],
    });
    const d = await discover(raw);
    const attempt = (authorization: string) =>
      fetch(viaLoopback(d.token_endpoint), {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: 'made-up',
          redirect_uri: redirectUri,
        }),
      }).then((r) => r.status);
    expect(await attempt(basic(CLIENT_ID, secret))).toBe(401);
    expect(await attempt(`Basic ${Buffer.from(`${CLIENT_ID}:${secret}`).toString('base64')}`)).toBe(400);
  });

  it('answers refusals with an empty body where the profile says so, and refreshes without id_token in another', async () => {
    const empty = await dexWith({ profile: PROFILES.logoutHint });
    const d = await discover(empty);
    const refused = await fetch(viaLoopback(d.token_endpoint), {
      method: 'POST',
      headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'unknown' }),
    });
    expect(refused.status).toBe(400);
    expect(await refused.text()).toBe('');
    const noId = await dexWith({ profile: PROFILES.noIdTokenOnRefresh });
    const { tokens } = await login(noId, user('admin@example.com'));
    expect(tokens.id_token).toBeTruthy();
    const again = await refresh(noId, tokens.refresh_token!);
    expect(again.status).toBe(200);
    expect(again.body.id_token).toBeUndefined();
    expect(again.body.refresh_token).not.toBe(tokens.refresh_token);
  });
});

describe('Browser cookie jar', () => {
  it('honours Domain, Path, Max-Age deletion, Secure on localhost and the __Host- prefix', () => {
    const b = new Browser();
    b.setCookie('http://app.localhost:8080/a/b', 'host=1');
    b.setCookie('http://app.localhost:8080/', 'dom=2; Domain=.localhost; Path=/');
    b.setCookie('http://app.localhost:8080/', 'sub=3; Path=/sub');
    b.setCookie('http://app.localhost:8080/', 'sec=4; Secure; Path=/');
    b.setCookie('http://app.localhost:8080/', '__Host-x=5; Secure; Path=/');
    b.setCookie('http://app.localhost:8080/', '__Host-bad=6; Secure; Path=/; Domain=app.localhost');
    b.setCookie('http://app.localhost:8080/', 'evil=7; Domain=example.com');
    expect(b.cookies('http://app.localhost:8080/a/c').map((c) => c.name)).toEqual([
      'host',
      'dom',
      'sec',
      '__Host-x',
    ]);
    expect(b.cookies('http://dex.localhost:5556/').map((c) => c.name)).toEqual(['dom']);
    expect(b.cookies('http://app.localhost:8080/sub/x').map((c) => c.name)).toContain('sub');
    b.setCookie('http://app.localhost:8080/', 'dom=; Domain=localhost; Path=/; Max-Age=0');
    expect(b.cookies('http://dex.localhost:5556/')).toEqual([]);
    expect(() => b.get('http://example.com/')).toThrow(/non-loopback/);
  });
});
