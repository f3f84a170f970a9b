import { generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { decodeJwt, exportJWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { AppError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import {
  type AuthorizationRequest,
  createOidcProvider,
  newLoginSecrets,
  type OidcProvider,
  RefreshError,
  type TokenResult,
} from '../../src/oidc/provider.ts';
import { Browser, loginThroughDex } from '../support/browser.ts';
import {
  DEMO_USERS,
  type Dex,
  type DexClient,
  PROFILES,
  PUNCTUATED_SECRET,
  type StandInProfile,
  startDex,
} from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { LogCapture, TEST_COOKIE_SECRET } from '../support/service.ts';

/**
 * The protocol verbs of src/oidc against the stand-in in each provider profile: the login as a
 * browser does it, then what exchangeCode, refresh and endSessionUrl make of each difference.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const CLIENT_ID = 'verbs-client';

let rp: Server;
let callback: string;
const open: { dex: Dex; oidc: OidcProvider }[] = [];

beforeAll(async () => {
  const port = await freePort();
  rp = createServer((_req, res) => res.end('callback'));
  await new Promise<void>((resolve) => rp.listen(port, '127.0.0.1', resolve));
  callback = `http://127.0.0.1:${port}/oauth2/callback`;
});
afterAll(() => rp.close());
afterEach(async () => {
  for (const { dex, oidc } of open.splice(0)) {
    oidc.close();
    await dex.close();
  }
});

interface Setup {
  readonly dex: Dex;
  readonly oidc: OidcProvider;
  readonly logs: LogCapture;
}

async function setup(
  profile: StandInProfile,
  options: { secret?: string; env?: Record<string, string>; client?: Partial<DexClient> } = {},
): Promise<Setup> {
  const secret = options.secret ?? 'verbs-client-secret-0123';
  const dex = await startDex({
    profile,
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: secret,
        redirectUris: [callback],
        postLogoutRedirectUris: ['http://127.0.0.1/after'],
        ...options.client,
      },
    ],
  });
  const config = loadConfig({
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    OIDC_CLIENT_ID: CLIENT_ID,
    ...(secret ? { OIDC_CLIENT_SECRET: secret } : {}),
    COOKIE_SECRET: TEST_COOKIE_SECRET,
    ...options.env,
  });
  const logs = new LogCapture();
  const oidc = createOidcProvider({
    config,
    clock: systemClock,
    log: createLogger({ level: 'info', destination: logs }),
  });
  open.push({ dex, oidc });
  return { dex, oidc, logs };
}

/** A login as the browser makes it; returns what the callback received and the request. */
async function authorize(
  s: Setup,
  extra: Partial<AuthorizationRequest> = {},
  browser = new Browser({ navigation: true }),
) {
  const request: AuthorizationRequest = { redirectUri: callback, ...newLoginSecrets(), ...extra };
  const { final } = await loginThroughDex(browser, await s.oidc.authorizationUrl(request), admin);
  return { callbackUrl: new URL(final.url), request, browser };
}

async function login(s: Setup): Promise<TokenResult> {
  const { callbackUrl, request } = await authorize(s);
  return s.oidc.exchangeCode(callbackUrl, request);
}

describe('refresh', () => {
  it('a refresh answered without id_token hands back the rotated refresh token to keep', async () => {
    const s = await setup(PROFILES.noIdTokenOnRefresh);
    const tokens = await login(s);
    const refreshed = await s.oidc.refresh(tokens.refreshToken!);
    expect(refreshed.idToken).toBeUndefined();
    expect(refreshed.refreshToken).toBeTruthy();
    expect(refreshed.refreshToken).not.toBe(tokens.refreshToken);
    // The spent token is one-time: replaying it is refused (and revokes the grant).
    await expect(s.oidc.refresh(tokens.refreshToken!)).rejects.toMatchObject({ kind: 'terminal' });
  });

  it('a 400 with an empty body is a terminal refusal', async () => {
    const s = await setup(PROFILES.logoutHint);
    const tokens = await login(s);
    s.dex.failNextRefreshes(1, 400);
    const error = await s.oidc.refresh(tokens.refreshToken!).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RefreshError);
    expect(error).toMatchObject({ kind: 'terminal', status: 400 });
  });
});

describe('client authentication at the token endpoint', () => {
  it('uses client_secret_post when that is all discovery offers', async () => {
    const s = await setup(PROFILES.postOnly, { secret: PUNCTUATED_SECRET });
    expect((await login(s)).idToken).toBeTruthy();
    expect(s.oidc.profile()?.tokenAuthMethod).toBe('client_secret_post');
  });

  it('falls back to unencoded Basic credentials once for a provider that does not form-decode them, and says so', async () => {
    const s = await setup(PROFILES.undecodedBasic, { secret: PUNCTUATED_SECRET });
    const tokens = await login(s);
    expect(s.oidc.profile()?.tokenAuthMethod).toBe('client_secret_basic');
    const errorsAfterLogin = s.dex.counts.tokenErrors;
    expect(errorsAfterLogin).toBe(1); // the form-encoded attempt
    await s.oidc.refresh(tokens.refreshToken!);
    expect(s.dex.counts.tokenErrors).toBe(errorsAfterLogin); // the unencoded form is kept
    const warnings = s.logs.records().filter((r) => String(r['msg']).includes('RFC 6749 §2.3.1'));
    expect(warnings).toHaveLength(1);
    expect(s.logs.text).not.toContain(PUNCTUATED_SECRET);
  });

  it('sends form-encoded Basic credentials to Dex, which decodes them, when OIDC_TOKEN_AUTH_METHOD says so', async () => {
    const s = await setup(PROFILES.dex, {
      secret: PUNCTUATED_SECRET,
      env: { OIDC_TOKEN_AUTH_METHOD: 'client_secret_basic' },
    });
    expect((await login(s)).idToken).toBeTruthy();
    expect(s.dex.counts.tokenErrors).toBe(0);
  });

  it.each(['pem', 'jwk'] as const)(
    'signs a private_key_jwt assertion with a %s key and needs no secret',
    async (form) => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const publicJwk = { ...(await exportJWK(publicKey)), kid: 'verbs-key-1', alg: 'ES256', use: 'sig' };
      const key =
        form === 'pem'
          ? privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
          : JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'verbs-key-1' });
      const s = await setup(
        { ...PROFILES.postOnly, authMethods: ['private_key_jwt'] },
        { secret: '', client: { jwks: [publicJwk] }, env: { OIDC_CLIENT_PRIVATE_KEY: key } },
      );
      expect((await login(s)).idToken).toBeTruthy();
      expect(s.oidc.profile()?.tokenAuthMethod).toBe('private_key_jwt');
    },
  );
});

describe('claims', () => {
  it('a login whose token has no user name claim fails naming OIDC_USERNAME_CLAIM and the claims it carried', async () => {
    const s = await setup({ ...PROFILES.minimalClaims, omitClaims: ['email', 'groups', 'email_verified'] });
    const error = await login(s).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    const e = error as AppError;
    expect(e.code).toBe('claims_missing');
    expect(e.status).toBe(403);
    for (const text of [e.publicMessage, e.detail ?? '']) {
      expect(text).toContain('"email" claim');
      expect(text).toContain('OIDC_USERNAME_CLAIM');
      expect(text).toMatch(/carried: .*\bname\b.*\bsub\b/);
    }
  });

  it('a token without groups and email_verified logs in: no groups, email_verified not said', async () => {
    const s = await setup(PROFILES.minimalClaims);
    const { claims } = await login(s);
    expect(claims.email).toBe(admin.email);
    expect(claims['groups']).toBeUndefined();
    expect(claims.email_verified).toBeUndefined();
  });

  it('warns once at start about scopes the provider does not list, and never about Dex’s cross-client scope', async () => {
    const generic = await setup(PROFILES.minimalClaims);
    await generic.oidc.reachable();
    await generic.oidc.authorizationUrl({ redirectUri: callback, ...newLoginSecrets() });
    await generic.oidc.authorizationUrl({ redirectUri: callback, ...newLoginSecrets() });
    const unlisted = generic.logs.records().filter((r) => String(r['msg']).includes('scopes_supported'));
    expect(unlisted).toHaveLength(1);
    expect(unlisted[0]?.['scopes']).toEqual(['groups']);
    const dex = await setup(PROFILES.dex, {
      env: { OIDC_SCOPES: 'openid profile email groups offline_access audience:server:client_id:kubernetes' },
    });
    await dex.oidc.authorizationUrl({ redirectUri: callback, ...newLoginSecrets() });
    expect(dex.logs.text).not.toContain('scopes_supported');
  });
});

describe('authorization and end-session URLs', () => {
  it('asks with prompt=none for a silent login, and with PKCE S256 even where PKCE is not advertised', async () => {
    const s = await setup(PROFILES.minimalClaims);
    const url = new URL(
      await s.oidc.authorizationUrl({ redirectUri: callback, ...newLoginSecrets(), silent: true }),
    );
    expect(url.searchParams.get('prompt')).toBe('none');
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(s.oidc.profile()).toMatchObject({ pkce: true, pkceAdvertised: false, isDex: false });
  });

  it('a silent login succeeds at a provider that still has the session, and is refused where it has none', async () => {
    const s = await setup(PROFILES.noIdTokenOnRefresh);
    const first = await authorize(s);
    await s.oidc.exchangeCode(first.callbackUrl, first.request);
    const silently = async (browser: Browser) => {
      const request: AuthorizationRequest = { redirectUri: callback, ...newLoginSecrets(), silent: true };
      const { final } = await browser.follow(await s.oidc.authorizationUrl(request));
      return { request, answer: new URL(final.url).searchParams };
    };
    expect((await silently(new Browser({ navigation: true }))).answer.get('error')).toBe('login_required');
    const { request, answer } = await silently(first.browser);
    const final = { url: `${callback}?${answer}` };
    expect(answer.get('code')).toBeTruthy();
    expect((await s.oidc.exchangeCode(new URL(final.url), request)).idToken).toBeTruthy();
  });

  it('sends id_token_hint, client_id and post_logout_redirect_uri to an end_session_endpoint that needs the hint', async () => {
    const s = await setup(PROFILES.logoutHint);
    const { idToken } = await login(s);
    const rd = 'http://127.0.0.1/after';
    const url = new URL(s.oidc.endSessionUrl({ idTokenHint: idToken, postLogoutRedirectUri: rd })!);
    expect(url.searchParams.get('id_token_hint')).toBe(idToken);
    expect(url.searchParams.get('client_id')).toBe(CLIENT_ID);
    expect(url.searchParams.get('post_logout_redirect_uri')).toBe(rd);
    expect(decodeJwt(idToken).aud).toBe(CLIENT_ID);
    const accepted = await fetch(url, { redirect: 'manual' });
    expect(accepted.status).toBe(302);
    expect(accepted.headers.get('location')).toBe(rd);
    expect(s.dex.counts.endSessions).toBe(1);
    url.searchParams.delete('id_token_hint');
    expect((await fetch(url, { redirect: 'manual' })).status).toBe(400);
  });

  it('offers no end-session URL for Dex, which has no end_session_endpoint', async () => {
    const s = await setup(PROFILES.dex);
    const { idToken } = await login(s);
    expect(s.oidc.endSessionUrl({ idTokenHint: idToken, postLogoutRedirectUri: undefined })).toBeUndefined();
    expect(s.oidc.profile()).toMatchObject({ isDex: true, name: 'Dex' });
  });
});
