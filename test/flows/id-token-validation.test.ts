import { createServer, type Server } from 'node:http';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { type RunningService, startService } from '../../src/main.ts';
import { createOidcProvider } from '../../src/oidc/provider.ts';
import { Browser } from '../support/browser.ts';
import { freePort } from '../support/ports.ts';
import { LogCapture, TEST_COOKIE_SECRET } from '../support/service.ts';

/**
 * ID-token validation on the login path (spec dex-and-kubernetes §E.16): a stand-in provider
 * whose token endpoint answers each callback with a forged ID token, and the real callback —
 * openid-client's checks plus our own signature/iss/aud/exp/nonce verification — must refuse every
 * one of them: 4xx, no session cookie.
 */

const CLIENT_ID = 'forward-auth';
const CLIENT_SECRET = 'forging-idp-client-secret';

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

interface ForgingIdp {
  readonly issuer: string;
  /** The ID token the next code exchange returns, built from the nonce of the login. */
  forge: (nonce: string) => Promise<string>;
  jwksFetches: number;
  /** Publishes another signing key (Dex-style rotation); returns it. */
  rotate(): Promise<{ kid: string; keys: KeyPair }>;
  close(): Promise<void>;
}

async function startForgingIdp(): Promise<ForgingIdp> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}/`;
  const published: JWK[] = [];
  const publish = async (kid: string, keys: KeyPair) => {
    published.unshift({ ...(await exportJWK(keys.publicKey)), kid, use: 'sig', alg: 'RS256' });
  };
  const first = await generateKeyPair('RS256', { extractable: true });
  await publish('key-1', first);
  const idp: ForgingIdp = {
    issuer,
    forge: async () => {
      throw new Error('no forged token set');
    },
    jwksFetches: 0,
    async rotate() {
      const keys = await generateKeyPair('RS256', { extractable: true });
      const kid = `key-${published.length + 1}`;
      await publish(kid, keys);
      return { kid, keys };
    },
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/.well-known/openid-configuration') {
      json(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}auth`,
        token_endpoint: `${issuer}token`,
        jwks_uri: `${issuer}keys`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256', 'plain'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
        scopes_supported: ['openid', 'email', 'groups', 'profile', 'offline_access'],
      });
    } else if (path === '/keys') {
      idp.jwksFetches++;
      json(res, 200, { keys: published });
    } else if (path === '/token' && req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        idp.forge(currentNonce).then(
          (idToken) =>
            json(res, 200, {
              access_token: 'opaque-access-token',
              token_type: 'bearer',
              expires_in: 300,
              id_token: idToken,
            }),
          () => json(res, 500, { error: 'server_error' }),
        );
      });
    } else {
      json(res, 404, { error: 'not_found' });
    }
  });
  let currentNonce = '';
  Object.defineProperty(idp, 'nonce', {
    set: (n: string) => {
      currentNonce = n;
    },
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  (idp as ForgingIdp & { signer: KeyPair }).signer = first;
  return idp;
}

let idp: ForgingIdp & { signer?: KeyPair; nonce?: string };
let service: RunningService;
let own: string;
const logs = new LogCapture();

beforeAll(async () => {
  idp = await startForgingIdp();
  const port = await freePort();
  own = `http://app.localhost:${port}`;
  const config = loadConfig({
    OIDC_ISSUER_URL: idp.issuer,
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    COOKIE_SECRET: TEST_COOKIE_SECRET,
    COOKIE_SECURE: 'false',
    LOGIN_RATE_LIMIT_BURST: '1000',
    PORT: String(port),
    LOG_LEVEL: 'debug',
  });
  const log = createLogger({ level: config.logLevel, destination: logs });
  // No cooldown between JWKS fetches, so "an unknown kid causes one re-fetch" is observable.
  const oidc = createOidcProvider({ config, log, clock: systemClock, jwksCooldownMs: 0 });
  service = await startService(config, { log, oidc, host: '127.0.0.1', drainMs: 1_000 });
});
afterAll(async () => {
  await service?.close();
  await idp?.close();
});

const now = () => Math.floor(Date.now() / 1000);

function goodClaims(nonce: string): Record<string, unknown> {
  return {
    iss: idp.issuer,
    aud: CLIENT_ID,
    sub: 'CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs',
    email: 'admin@example.com',
    email_verified: true,
    groups: ['admins'],
    name: 'admin',
    nonce,
    iat: now(),
    exp: now() + 300,
  };
}

async function sign(
  claims: Record<string, unknown>,
  options: { kid?: string; keys?: KeyPair; alg?: string } = {},
): Promise<string> {
  const keys = options.keys ?? (idp.signer as KeyPair);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? 'RS256', kid: options.kid ?? 'key-1' })
    .sign(keys.privateKey);
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Starts a login, lets the stand-in answer the code exchange with `forge`, returns the callback reply. */
async function callbackWith(forge: (nonce: string) => Promise<string>) {
  const browser = new Browser({ navigation: true });
  const start = await browser.get(`${own}/oauth2/start?rd=%2Fdash`);
  expect(start.status).toBe(302);
  const authorize = new URL(start.location!);
  const state = authorize.searchParams.get('state')!;
  idp.nonce = authorize.searchParams.get('nonce')!;
  idp.forge = forge;
  const reply = await browser.get(
    `${own}/oauth2/callback?code=forged-code&state=${encodeURIComponent(state)}`,
  );
  const session = browser.cookies(own).find((c) => c.name === '_forward_auth');
  return { reply, session, browser };
}

describe('the login callback validates the ID token', () => {
  it('accepts a well-formed token (the control case)', async () => {
    const { reply, session } = await callbackWith((nonce) => sign(goodClaims(nonce)));
    expect(reply.status).toBe(302);
    expect(reply.location).toBe(`${own}/dash`);
    expect(session).toBeDefined();
  });

  it.each([
    [
      'an issuer that differs by a trailing slash',
      (n: string) => sign({ ...goodClaims(n), iss: idp.issuer.replace(/\/$/, '') }),
    ],
    ['a foreign audience', (n: string) => sign({ ...goodClaims(n), aud: 'someone-else' })],
    [
      'an audience list without our client',
      (n: string) => sign({ ...goodClaims(n), aud: ['kubernetes', 'grafana'] }),
    ],
    ['an expired token', (n: string) => sign({ ...goodClaims(n), iat: now() - 600, exp: now() - 5 })],
    ['nbf in the future', (n: string) => sign({ ...goodClaims(n), nbf: now() + 120 })],
    ['alg "none"', async (n: string) => `${b64({ alg: 'none', typ: 'JWT' })}.${b64(goodClaims(n))}.`],
    [
      'HS256 with the public key as the HMAC secret',
      async (n: string) => {
        const pem = await exportSPKI((idp.signer as KeyPair).publicKey);
        return new SignJWT(goodClaims(n))
          .setProtectedHeader({ alg: 'HS256', kid: 'key-1' })
          .sign(new TextEncoder().encode(pem));
      },
    ],
    [
      'ES256, an algorithm the provider does not sign with',
      async (n: string) => {
        const ec = await generateKeyPair('ES256');
        return sign(goodClaims(n), { alg: 'ES256', keys: ec, kid: 'key-1' });
      },
    ],
    [
      'a bad signature',
      async (n: string) => {
        const token = await sign(goodClaims(n));
        const [h, p, s] = token.split('.') as [string, string, string];
        const flipped = `${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`;
        return `${h}.${p}.${flipped}`;
      },
    ],
    [
      'claims swapped under a valid signature',
      async (n: string) => {
        const token = await sign(goodClaims(n));
        const [h, , s] = token.split('.') as [string, string, string];
        return `${h}.${b64({ ...goodClaims(n), email: 'mallory@example.com' })}.${s}`;
      },
    ],
    [
      'a missing sub',
      (n: string) => {
        const { sub: _sub, ...claims } = goodClaims(n);
        return sign(claims);
      },
    ],
    ['a nonce of another login', (_n: string) => sign(goodClaims('a-nonce-from-another-login'))],
    [
      'no nonce at all',
      (n: string) => {
        const { nonce: _nonce, ...claims } = goodClaims(n);
        return sign(claims);
      },
    ],
  ])('refuses %s: 4xx, no session', async (_name, forge) => {
    const { reply, session } = await callbackWith(forge);
    expect(reply.status).toBeGreaterThanOrEqual(400);
    expect(reply.status).toBeLessThan(500);
    expect(reply.headers.getSetCookie().some((c) => /^_forward_auth=[^;]+;/.test(c))).toBe(false);
    expect(session).toBeUndefined();
    expect(reply.body).toContain('Sign in again');
  });

  it('refuses a token with an unknown kid after fetching the key set once more', async () => {
    // The key set is cached from the earlier logins; an unknown kid makes the verifier look again.
    await callbackWith((nonce) => sign(goodClaims(nonce)));
    const before = idp.jwksFetches;
    const stranger = await generateKeyPair('RS256');
    const { reply, session } = await callbackWith((nonce) =>
      sign(goodClaims(nonce), { keys: stranger, kid: 'not-published' }),
    );
    expect(reply.status).toBe(400);
    expect(session).toBeUndefined();
    expect(idp.jwksFetches).toBe(before + 1);
  });

  it('accepts a token signed with a key the provider rotated in since the key set was cached', async () => {
    await callbackWith((nonce) => sign(goodClaims(nonce)));
    const before = idp.jwksFetches;
    const { kid, keys } = await idp.rotate();
    const { reply, session } = await callbackWith((nonce) => sign(goodClaims(nonce), { keys, kid }));
    expect(reply.status).toBe(302);
    expect(session).toBeDefined();
    expect(idp.jwksFetches).toBe(before + 1);
  });

  it('lets a login with email_verified: false complete, but /auth refuses it with 403 (never upstream)', async () => {
    const { reply, session } = await callbackWith((nonce) =>
      sign({ ...goodClaims(nonce), email_verified: false }),
    );
    expect(reply.status).toBe(302);
    const decision = await new Browser({ navigation: true }).get(`${service.url}/auth`, {
      cookie: `_forward_auth=${session!.value}`,
      'x-forwarded-proto': 'http',
      'x-forwarded-host': new URL(own).host,
      'x-forwarded-uri': '/dash',
    });
    expect(decision.status).toBe(403);
    expect(decision.headers.get('authorization')).toBeNull();
    expect(decision.body).toContain('not verified');
  });

  it('never logs the forged tokens or the client secret', () => {
    expect(logs.text).not.toContain(CLIENT_SECRET);
    expect(logs.text).not.toMatch(/eyJ[\w-]{10,}\.eyJ/);
  });
});
