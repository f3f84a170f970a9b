import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config.ts';
import {
  type Check,
  checkSettings,
  type DoctorReport,
  doctorCommand,
  estimatedBits,
  loadChecks,
  runDoctor,
} from '../../../src/doctor/index.ts';
import { type Dex, PROFILES, startDex } from '../../support/dex.ts';
import { freePort } from '../../support/ports.ts';
import { type RedisServer, startRedis } from '../../support/redis.ts';

/**
 * `doctor` against the Dex stand-in and a real Redis: a good configuration passes; each seeded
 * mistake is reported as a problem (and makes the command exit non-zero); no secret is printed.
 */

const CLIENT_ID = 'forward-auth';
const CLIENT_SECRET = 'dex-client-secret-for-doctor-tests';
const CALLBACK = 'http://auth.apps.localhost:8080/oauth2/callback';
const COOKIE_SECRET = randomBytes(32).toString('base64url');

let dex: Dex;
let redis: RedisServer;
let good: Record<string, string>;

beforeAll(async () => {
  dex = await startDex({
    clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUris: [CALLBACK] }],
  });
  redis = await startRedis();
  good = {
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
    COOKIE_SECRET,
    REDIRECT_URL: CALLBACK,
    COOKIE_DOMAIN: '.apps.localhost',
    ALLOWED_REDIRECT_DOMAINS: '.apps.localhost',
    REDIS_URL: redis.url,
  };
});
afterAll(async () => {
  await dex?.close();
  await redis?.close();
});

const problems = (report: DoctorReport): Check[] => report.checks.filter((c) => c.status === 'problem');
const problemAbout = (report: DoctorReport, topic: string): Check | undefined =>
  problems(report).find((c) => c.topic === topic);

describe('doctor', () => {
  it('passes a good configuration, having checked provider, client, callback, cookies, secrets and Redis', async () => {
    const report = await runDoctor(good);
    expect(problems(report)).toEqual([]);
    const ok = new Set(report.checks.filter((c) => c.status === 'ok').map((c) => c.topic));
    for (const topic of [
      'configuration',
      'issuer',
      'jwks',
      'client credentials',
      'redirect URL',
      'cookie domain',
      'secrets',
      'redis',
    ]) {
      expect(ok, topic).toContain(topic);
    }
  });

  it('reports an issuer that differs from the provider’s by a trailing slash', async () => {
    const report = await runDoctor({ ...good, OIDC_ISSUER_URL: dex.issuer.replace(/\/$/, '') });
    expect(problemAbout(report, 'issuer')?.message).toMatch(/byte for byte.*trailing slash/);
  });

  it('reports an issuer where no provider answers', async () => {
    const report = await runDoctor({ ...good, OIDC_ISSUER_URL: `http://127.0.0.1:${await freePort()}/dex` });
    expect(problemAbout(report, 'discovery')?.message).toContain('cannot be reached');
  });

  it('reports a client secret the token endpoint rejects, without printing it', async () => {
    const wrong = 'not-the-secret-registered-in-dex';
    const report = await runDoctor({ ...good, OIDC_CLIENT_SECRET: wrong });
    expect(problemAbout(report, 'client credentials')?.message).toContain('invalid_client');
    expect(JSON.stringify(report)).not.toContain(wrong);
  });

  it('reports a callback URL the provider has not registered for the client', async () => {
    const report = await runDoctor({
      ...good,
      REDIRECT_URL: 'http://other.apps.localhost:8080/oauth2/callback',
    });
    expect(problemAbout(report, 'redirect URL')?.message).toMatch(/redirectURIs/);
  });

  it('checks per-host callbacks given with --host when REDIRECT_URL is unset', async () => {
    const { REDIRECT_URL: _, ...perHost } = good;
    const env = { ...perHost, COOKIE_SECURE: 'false' };
    const registered = await runDoctor(env, { hosts: ['auth.apps.localhost:8080'] });
    expect(problems(registered)).toEqual([]);
    const unregistered = await runDoctor(env, { hosts: ['grafana.apps.localhost:8080'] });
    expect(problemAbout(unregistered, 'redirect URL')?.message).toContain('grafana.apps.localhost');
  });

  it('reports an http callback while cookies are Secure (a login loop)', async () => {
    const report = await runDoctor({
      ...good,
      REDIRECT_URL: 'http://auth.example.com/oauth2/callback',
      COOKIE_DOMAIN: '.example.com',
      ALLOWED_REDIRECT_DOMAINS: '.example.com',
    });
    expect(report.checks.some((c) => c.status === 'problem' && /COOKIE_SECURE=true/.test(c.message))).toBe(
      true,
    );
  });

  it('reports a cookie domain that does not cover the allowed redirect domains', async () => {
    const report = await runDoctor({
      ...good,
      ALLOWED_REDIRECT_DOMAINS: '.apps.localhost,grafana.other.test',
    });
    expect(problemAbout(report, 'cookie domain')?.message).toContain('grafana.other.test');
  });

  it('reports a central callback host without a cookie domain', async () => {
    const { COOKIE_DOMAIN: _, ...env } = good;
    const report = await runDoctor({ ...env, ALLOWED_REDIRECT_DOMAINS: 'grafana.apps.localhost' });
    expect(problemAbout(report, 'cookie domain')?.message).toMatch(/COOKIE_DOMAIN is unset/);
  });

  it('reports a cookie domain browsers refuse, as serve does', async () => {
    const report = await runDoctor({ ...good, COOKIE_DOMAIN: '.localhost' });
    expect(problemAbout(report, 'configuration')?.message).toMatch(/COOKIE_DOMAIN .*top-level/);
  });

  it('reports a long but weak cookie secret with the start-up check, without printing it', async () => {
    const weak = 'ab'.repeat(20);
    const report = await runDoctor({ ...good, COOKIE_SECRET: weak });
    expect(problemAbout(report, 'configuration')?.message).toMatch(/COOKIE_SECRET looks weak/);
    expect(JSON.stringify(report)).not.toContain(weak);
    expect(estimatedBits(weak)).toBeLessThan(96);
    expect(estimatedBits(COOKIE_SECRET)).toBeGreaterThan(128);
  });

  it('checks a hand-built Config with the same secret check as start-up', () => {
    const config = { cookieSecrets: [{ id: '1', secret: 'a'.repeat(32) }], clientSecret: CLIENT_SECRET };
    const secrets = checkSettings(config as unknown as Config).filter((c) => c.topic === 'secrets');
    expect(secrets).toEqual([
      expect.objectContaining({
        status: 'problem',
        message: expect.stringContaining('COOKIE_SECRET looks weak'),
      }),
    ]);
  });

  it('reports a broken AUTHZ_CONFIG and an unreachable issuer with their causes', async () => {
    const closed = await freePort();
    const report = await runDoctor(
      { ...good, OIDC_ISSUER_URL: `http://127.0.0.1:${closed}/dex`, AUTHZ_CONFIG: '/nonexistent/authz.yaml' },
      { timeoutMs: 1_500 },
    );
    expect(problemAbout(report, 'configuration')?.message).toMatch(/AUTHZ_CONFIG \/nonexistent\/authz\.yaml/);
    const healthy = await runDoctor({ ...good, OIDC_ISSUER_URL: `http://127.0.0.1:${closed}/dex` });
    expect(problemAbout(healthy, 'discovery')?.message).toContain(`ECONNREFUSED 127.0.0.1:${closed}`);
  });

  it('reports a Redis that cannot be reached', async () => {
    const report = await runDoctor(
      { ...good, REDIS_URL: `redis://127.0.0.1:${await freePort()}` },
      { timeoutMs: 1_500 },
    );
    expect(problemAbout(report, 'redis')?.message).toContain('not reachable');
  });

  it('reports a Redis that answers but refuses writes (a read-only replica)', async () => {
    const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(await freePort())] });
    try {
      const report = await runDoctor({ ...good, REDIS_URL: replica.url });
      expect(problemAbout(report, 'redis')?.message).toMatch(/cannot be written.*READONLY/);
    } finally {
      await replica.close();
    }
  });

  it('reports every configuration problem at once, like serve, and checks nothing else', async () => {
    const { OIDC_CLIENT_ID: _, ...env } = good;
    const report = await runDoctor({ ...env, COOKIE_SECRET: 'short' });
    const messages = problems(report).map((c) => c.message);
    expect(messages).toEqual(
      expect.arrayContaining([
        expect.stringContaining('OIDC_CLIENT_ID is required'),
        expect.stringContaining('COOKIE_SECRET is shorter than 32 characters'),
      ]),
    );
    expect(report.checks.every((c) => c.topic === 'configuration')).toBe(true);
  });

  it('the command prints one line per check and exits 1 on a problem, 0 without', async () => {
    let text = '';
    const out = { write: (t: string) => (text += t) };
    expect(await doctorCommand([], good, out)).toBe(0);
    expect(text).toContain('no problems found');
    text = '';
    expect(
      await doctorCommand(['--json'], { ...good, OIDC_CLIENT_SECRET: 'wrong-wrong-wrong-wrong' }, out),
    ).toBe(1);
    expect(JSON.parse(text)).toMatchObject({ problems: 1 });
    expect(await doctorCommand(['--bogus'], good, out)).toBe(2);
  });

  it('`dex-forward-auth doctor` runs from source (npm run doctor) with the environment as its configuration', async () => {
    const cli = fileURLToPath(new URL('../../../src/cli.ts', import.meta.url));
    const run = (env: Record<string, string>) =>
      new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', cli, 'doctor'],
          { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let stdout = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout }));
      });
    const passing = await run(good);
    expect(passing.stdout).toContain('no problems found');
    expect(passing.code).toBe(0);
    const failing = await run({ ...good, OIDC_CLIENT_SECRET: 'wrong-wrong-wrong-wrong' });
    expect(failing.code).toBe(1);
    expect(failing.stdout).toMatch(/FAIL +client credentials/);
    expect(failing.stdout + passing.stdout).not.toContain(COOKIE_SECRET);
  });
});

describe('the runner', () => {
  it('runs every check file in src/doctor/checks, in report order', async () => {
    const files = readdirSync(new URL('../../../src/doctor/checks/', import.meta.url)).filter((f) =>
      f.endsWith('.ts'),
    );
    const checks = await loadChecks();
    expect(checks).toHaveLength(files.length);
    expect(checks.map((c) => c.order)).toEqual([...checks.map((c) => c.order)].sort((a, b) => a - b));
    expect(checks[0]?.topic).toBe('discovery');
  });

  it('speaks of the identity provider, never of Dex, when the provider is not Dex', async () => {
    const generic = await startDex({
      profile: PROFILES.minimalClaims,
      clients: [{ clientId: CLIENT_ID, clientSecret: 'another-secret-entirely', redirectUris: [CALLBACK] }],
    });
    try {
      const report = await runDoctor({
        ...good,
        OIDC_ISSUER_URL: generic.issuer,
        REDIRECT_URL: 'http://other.apps.localhost:8080/oauth2/callback',
      });
      expect(problems(report).map((c) => c.topic)).toEqual(['client credentials', 'redirect URL']);
      expect(JSON.stringify(report)).not.toContain('Dex');
      expect(JSON.stringify(report)).toContain('the identity provider');
    } finally {
      await generic.close();
    }
  });
});
