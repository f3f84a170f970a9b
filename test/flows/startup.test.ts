import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser } from '../support/browser.ts';
import { type Dex, startDex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { makeTempDir, removeDir } from '../support/redis.ts';
import { startTestService, type TestService } from '../support/service.ts';
import { CLIENT_ID, CLIENT_SECRET, type Stack, startStack } from '../support/stack.ts';

/**
 * Start-up must not depend on Dex: a briefly unreachable provider gives clear 503s, health and
 * readiness stay up, and discovery is retried until it works — no crash loop.
 */
describe('when the provider is unreachable at start-up', () => {
  let service: TestService;
  let dex: Dex | undefined;
  let dexPort: number;
  const host = 'app.localhost:8443';

  beforeAll(async () => {
    dexPort = await freePort();
    service = await startTestService({
      OIDC_ISSUER_URL: `http://127.0.0.1:${dexPort}/`,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
    });
  });
  afterAll(async () => {
    await service?.close();
    await dex?.close();
  });

  const forwarded = { 'x-forwarded-host': host, 'x-forwarded-proto': 'http', 'x-forwarded-uri': '/page' };

  it('the service starts, is live and ready, and says the provider is unavailable', async () => {
    await request(service.server).get('/healthz').expect(200);
    const ready = await request(service.server).get('/readyz').expect(200);
    expect(ready.body).toMatchObject({ status: 'ready', provider: 'unavailable' });
  });

  it('a navigation gets a 503 page with Retry-After, never a 500', async () => {
    const reply = await new Browser({ navigation: true }).get(`${service.url}/auth`, forwarded);
    expect(reply.status).toBe(503);
    expect(reply.headers.get('retry-after')).toBeTruthy();
    expect(reply.headers.get('content-type')).toContain('text/html');
    expect(reply.body).toContain('identity provider');
  });

  it('an API call gets a 401 (it would not log in anyway)', async () => {
    const reply = await new Browser().get(`${service.url}/auth`, {
      ...forwarded,
      accept: 'application/json',
    });
    expect(reply.status).toBe(401);
  });

  it('logs the real cause of the failed discovery, not just "fetch failed"', () => {
    const failure = service.logs.records().find((r) => r['msg'] === 'oidc discovery failed; will retry');
    expect(JSON.stringify(failure)).toContain(`ECONNREFUSED 127.0.0.1:${dexPort}`);
  });

  it('once the provider is up, logins work without restarting the service', async () => {
    dex = await startDex({
      port: dexPort,
      clients: [
        {
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          redirectUris: [`http://${host}/oauth2/callback`],
        },
      ],
    });
    let status = 0;
    for (let i = 0; i < 100 && status !== 302; i++) {
      const reply = await new Browser({ navigation: true }).get(`${service.url}/auth`, forwarded);
      status = reply.status;
      if (status !== 302) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(302);
    const ready = await request(service.server).get('/readyz').expect(200);
    expect(ready.body.provider).toBe('ready');
    expect(service.logs.text).toContain('oidc discovery failed; will retry');
  });
});

describe('the direct routes', () => {
  let stack: Stack;
  let service: TestService;
  beforeAll(async () => {
    stack = await startStack({ redis: false, gateway: { proxy: 'none' } });
    service = stack.service;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('an unknown path is a 404 in JSON for API clients and a page for browsers', async () => {
    const json = await request(service.server).get('/nope').set('Accept', 'application/json').expect(404);
    expect(json.body).toMatchObject({ error: 'not_found' });
    const page = await request(service.server).get('/nope').set('Accept', 'text/html').expect(404);
    expect(page.headers['content-type']).toContain('text/html');
  });

  it('pages carry helmet’s headers and a strict CSP, and are never cached', async () => {
    const page = await request(service.server).get('/oauth2/sign_out').set('Accept', 'text/html').expect(200);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(page.headers['content-security-policy']).not.toContain('unsafe-inline');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['x-frame-options']).toBeDefined();
    expect(page.headers['cache-control']).toBe('no-store');
  });

  it('a request with oversized headers gets 431 with advice, not a crash', async () => {
    const reply = await new Browser()
      .get(`${service.url}/auth`, { 'x-big': 'a'.repeat(40_000) })
      .catch((e: Error) => e);
    if (reply instanceof Error) throw reply;
    expect(reply.status).toBe(431);
    expect(reply.body).toContain('authRequestHeaders');
    await request(service.server).get('/healthz').expect(200);
  });
});

/**
 * `serve` with several mistakes at once — in the environment, CONFIG_FILE, an X_FILE and the
 * AUTHZ_CONFIG policy — prints them all in one message and exits 2, before listening.
 */
describe('a start-up with a broken configuration', () => {
  it('lists every problem, those of the policy file included, in one message and never a secret', async () => {
    const dir = await makeTempDir('dfa-config-');
    const configFile = join(dir, 'config.yaml');
    const policy = join(dir, 'authz.yaml');
    await writeFile(configFile, 'OIDC_ISSUER: https://dex.example.com/dex\nCOOKIE_DOMAIN: .co.uk\n');
    await writeFile(policy, 'default: sometimes\n');
    const weak = 'ab'.repeat(20);
    const child = spawn(
      process.execPath,
      ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'src/cli.ts', 'serve'],
      {
        cwd: fileURLToPath(new URL('../../', import.meta.url)),
        env: {
          PATH: process.env['PATH'] ?? '',
          CONFIG_FILE: configFile,
          OIDC_CLIENT_ID: CLIENT_ID,
          OIDC_CLIENT_SECRET_FILE: join(dir, 'missing-secret'),
          COOKIE_SECRET: weak,
          COOKIE_SECRETT: 'typo',
          AUTHZ_CONFIG: policy,
          PORT: String(await freePort()),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(2);
    expect(stderr.match(/invalid configuration/g)).toHaveLength(1);
    for (const expected of [
      'OIDC_ISSUER_URL is required',
      'unknown setting OIDC_ISSUER (did you mean OIDC_ISSUER_URL?)',
      'COOKIE_DOMAIN .co.uk is a public suffix',
      'OIDC_CLIENT_SECRET_FILE',
      'COOKIE_SECRET looks weak',
      'COOKIE_SECRETT is not a setting (did you mean COOKIE_SECRET',
      `AUTHZ_CONFIG ${policy}: default`,
    ]) {
      expect(stderr).toContain(expected);
    }
    expect(stderr).not.toContain(weak);
    await removeDir(dir);
  });
});
