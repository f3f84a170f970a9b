import { EventEmitter } from 'node:events';
import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { guardImpersonation, impersonationRefusal } from '../../src/authz/impersonation.ts';
import { type Authorizer, defaultAuthorizer } from '../../src/authz/policy.ts';
import { boundedGroups, createUpstreamHeaderPlan, type HeaderValues } from '../../src/authz/upstream.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { encodeHeaderText, rawHeaderBytes } from '../../src/http/headerValues.ts';
import { setHeaderSafely } from '../../src/http/reply.ts';
import { type Identity, identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger } from '../../src/log.ts';
import { installProcessGuards } from '../../src/processGuards.ts';
import { LogCapture } from '../support/service.ts';

/**
 * The identity provider's data is hostile (DESIGN §10): names with any Unicode, commas, control
 * characters. Header values must never make Node throw, a group must never split, Kubernetes
 * system names must never be impersonated, and nothing may end the process silently.
 */

const NAMING = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: 'oidc:' };
const HEADERS = ['Authorization', 'X-Auth-Request-User', 'X-Auth-Request-Email', 'X-Auth-Request-Groups'];

function identity(claims: Record<string, unknown>): Identity {
  return identityFromClaims({ sub: 's', email_verified: true, ...claims }, NAMING);
}

/** Writes `headers` on a real ServerResponse and reads back what a client receives (raw bytes). */
async function roundTrip(headers: HeaderValues): Promise<Record<string, string[]>> {
  const server = createServer((_req, res: ServerResponse) => {
    for (const [name, value] of Object.entries(headers)) setHeaderSafely(res, name, value);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/' }, (res) => {
        res.resume();
        const out: Record<string, string[]> = {};
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const name = (res.rawHeaders[i] as string).toLowerCase();
          out[name] = [
            ...(out[name] ?? []),
            Buffer.from(res.rawHeaders[i + 1] as string, 'latin1').toString('utf8'),
          ];
        }
        res.on('end', () => resolve(out));
      });
      req.on('error', reject);
      req.end();
    });
  } finally {
    server.close();
  }
}

/** The string as UTF-8 carries it: lone surrogates become U+FFFD (String#toWellFormed). */
const wellFormed = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

describe('upstream header values from hostile identity-provider data', () => {
  const plan = createUpstreamHeaderPlan({
    config: { upstreamHeaders: HEADERS, upstreamAuth: 'id-token', upstreamGroupsMaxBytes: 8000 },
  });

  it('a name above U+00FF is written percent-encoded instead of crashing the write', async () => {
    const who = identity({ email: 'zoë.ŁÓDŹ@例え.jp', groups: ['日本語', 'Ünïcödé', '😀 emoji'] });
    const seen = await roundTrip(plan({ identity: who, token: 'a.b.c' }));
    expect(seen['x-auth-request-email']).toEqual(['zo%C3%AB.%C5%81%C3%93D%C5%B9@%E4%BE%8B%E3%81%88.jp']);
    expect(seen['x-auth-request-groups']).toEqual([
      'oidc:%E6%97%A5%E6%9C%AC%E8%AA%9E,oidc:%C3%9Cn%C3%AFc%C3%B6d%C3%A9,oidc:%F0%9F%98%80 emoji',
    ]);
    expect(seen['x-auth-request-groups']![0]!.split(',').map(decodeURIComponent)).toEqual(who.groups);
  });

  it('a group holding a comma stays one group: the comma is %2C, and % itself is %25', async () => {
    const who = identity({ email: 'a@example.com', groups: ['Sales, EMEA', '100%', 'plain'] });
    const seen = await roundTrip(plan({ identity: who, token: 'a.b.c' }));
    const groups = seen['x-auth-request-groups']![0]!.split(',');
    expect(groups).toEqual(['oidc:Sales%2C EMEA', 'oidc:100%25', 'oidc:plain']);
    expect(groups.map(decodeURIComponent)).toEqual(['oidc:Sales, EMEA', 'oidc:100%', 'oidc:plain']);
  });

  it('CR, LF, NUL and other control characters are encoded, never a second header line', async () => {
    const who = identity({ email: 'x@example.com\r\nX-Injected: 1', groups: ['a\nb', '\u0000', '\ttab'] });
    const seen = await roundTrip(plan({ identity: who, token: 'a.b.c' }));
    expect(seen['x-injected']).toBeUndefined();
    expect(seen['x-auth-request-email']).toEqual(['x@example.com%0D%0AX-Injected: 1']);
    expect(seen['x-auth-request-groups']).toEqual(['oidc:a%0Ab,oidc:%00,oidc:%09tab']);
  });

  it('plain ASCII names, the ones every deployment has today, pass unchanged', () => {
    for (const name of ['alice@example.com', 'oidc:team-a', 'Domain Admins', 'a_b.c~d']) {
      expect(encodeHeaderText(name)).toBe(name);
    }
  });

  it('every string encodes to a writable value that decodes back exactly (fuzzed)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.string({ unit: 'binary', maxLength: 40 }),
        (a, b) => {
          for (const value of [a, b]) {
            const encoded = encodeHeaderText(value);
            expect(encoded).toMatch(/^[\x21-\x7e]?([\x20-\x7e]*[\x21-\x7e])?$/);
            expect(encoded).not.toContain(',');
            // Lone surrogates are not text; every well-formed string survives the round trip.
            if (wellFormed(value) === value) expect(decodeURIComponent(encoded)).toBe(value);
          }
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it('the groups bound counts encoded bytes and still keeps whole groups', () => {
    const groups = Array.from({ length: 50 }, (_, i) => `gr\u00fcppe-${i}`);
    const bounded = boundedGroups(groups, 100);
    expect(bounded.length).toBeLessThanOrEqual(100);
    for (const g of bounded.split(',')) expect(groups).toContain(decodeURIComponent(g));
  });

  it('a guarded write of a value Node refuses encodes it rather than throwing', async () => {
    const seen = await roundTrip({ 'X-Custom': 'Ω\r\n', 'X-List': ['ok', 'ü€'] });
    expect(seen['x-custom']).toEqual(['%CE%A9%0D%0A']);
    expect(seen['x-list']).toEqual(['ok', '%C3%BC%E2%82%AC']);
  });
});

describe('impersonation: names the API server takes byte for byte', () => {
  const plan = createUpstreamHeaderPlan({
    config: { upstreamHeaders: HEADERS, upstreamAuth: 'impersonate', upstreamGroupsMaxBytes: 8000 },
    serviceAccountToken: () => 'sa',
  });

  it('non-ASCII names and groups with commas go as their UTF-8 bytes, one Impersonate-Group line each', async () => {
    const who = identity({ email: 'zoë@example.com', groups: ['Sales, EMEA', '日本'] });
    const seen = await roundTrip(plan({ identity: who, token: 't' }));
    expect(seen['impersonate-user']).toEqual(['zoë@example.com']);
    expect(seen['impersonate-group']).toEqual(['oidc:Sales, EMEA', 'oidc:日本', 'system:authenticated']);
  });

  it('a group with control characters is left out of Impersonate-Group, with a log line', () => {
    const logs = new LogCapture();
    const logged = createUpstreamHeaderPlan({
      config: { upstreamHeaders: HEADERS, upstreamAuth: 'impersonate', upstreamGroupsMaxBytes: 8000 },
      serviceAccountToken: () => 'sa',
      log: createLogger({ level: 'warn', destination: logs }),
    });
    const who = identity({ email: 'a@example.com', groups: ['ok', 'bad\r\nImpersonate-Group: x', 'edge '] });
    expect(logged({ identity: who, token: 't' })['Impersonate-Group']).toEqual([
      'oidc:ok',
      'system:authenticated',
    ]);
    expect(logs.text).toContain('left out of Impersonate-Group');
    expect(rawHeaderBytes('x\ty')).toBeUndefined();
  });

  it.each([
    [
      'a system: group (system:masters is cluster-admin)',
      { email: 'a@example.com', groups: ['system:masters'] },
    ],
    ['a system: user name', { email: 'system:admin', groups: [] }],
    ['a service-account-looking name', { email: 'system:serviceaccount:kube-system:default', groups: [] }],
    ['a user name with a line break', { email: 'a@example.com\nx', groups: [] }],
  ])('%s is refused with a 403 that says why, and a log line', (_name, claims) => {
    const who = identityFromClaims(
      { sub: 's', email_verified: true, ...claims },
      { ...NAMING, groupsPrefix: '' },
    );
    expect(impersonationRefusal(who)).toMatchObject({ allowed: false, code: 'forbidden' });
    const logs = new LogCapture();
    const guarded = guardImpersonation(defaultAuthorizer, createLogger({ level: 'info', destination: logs }));
    const decision = guarded.decide(who, { method: 'GET', host: 'k8s.example.com', path: '/' });
    expect(decision.allowed).toBe(false);
    guarded.decide(who, { method: 'GET', host: 'k8s.example.com', path: '/' });
    expect(logs.lines.filter((l) => l.includes('impersonation refused'))).toHaveLength(1);
  });

  it('a prefixed group that merely contains system: is fine', () => {
    const inner: Authorizer = { decide: () => ({ allowed: true }) };
    const guarded = guardImpersonation(inner, createLogger({ level: 'silent' }));
    const who = identity({ email: 'a@example.com', groups: ['system:masters'] }); // oidc:system:masters
    expect(guarded.decide(who, { method: 'GET', host: 'h', path: '/' }).allowed).toBe(true);
  });
});

describe('impersonation settings, as the API server names users', () => {
  const base = {
    OIDC_ISSUER_URL: 'https://dex.example.com/',
    OIDC_CLIENT_ID: 'c',
    OIDC_CLIENT_SECRET: 's',
    COOKIE_SECRET: 'Xk3!vQ9#mP2$wL7&nR5*tY8@bH4^cJ6%',
    UPSTREAM_AUTH: 'impersonate',
    TRUSTED_PROXIES: '10.42.0.0/16',
    SERVICE_ACCOUNT_TOKEN_PATH: '/token',
  };
  const readFile = () => 'sa-token';
  const problems = (env: Record<string, string>): string[] => {
    try {
      loadConfig({ ...base, ...env }, readFile);
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return [...error.problems];
      throw error;
    }
  };

  it('refuses a non-email user-name claim without both prefixes', () => {
    const found = problems({ OIDC_USERNAME_CLAIM: 'preferred_username' });
    expect(found.some((p) => p.includes('needs OIDC_USERNAME_PREFIX'))).toBe(true);
    expect(found.some((p) => p.includes('needs OIDC_GROUPS_PREFIX'))).toBe(true);
    expect(
      problems({ OIDC_USERNAME_CLAIM: 'sub', OIDC_USERNAME_PREFIX: 'oidc:', OIDC_GROUPS_PREFIX: 'oidc:' }),
    ).toEqual([]);
  });

  it('accepts the email claim without prefixes, as the API server does', () => {
    expect(problems({})).toEqual([]);
  });

  it('refuses a prefix that is itself a system: name', () => {
    expect(problems({ OIDC_GROUPS_PREFIX: 'system:' })).toEqual([
      'OIDC_GROUPS_PREFIX must not start with "system:" (Kubernetes reserves those names)',
    ]);
  });
});

describe('process guards', () => {
  it('an unhandled rejection is logged and the process keeps serving', () => {
    const target = new EventEmitter();
    const logs = new LogCapture();
    let fatal = 0;
    installProcessGuards({
      log: createLogger({ level: 'info', destination: logs }),
      onFatal: () => fatal++,
      target: target as never,
    });
    target.emit('unhandledRejection', new TypeError('boom'));
    expect(fatal).toBe(0);
    expect(logs.records()[0]).toMatchObject({ level: 'error', err: { type: 'TypeError', message: 'boom' } });
  });

  it('an uncaught exception is logged as fatal and drains once', () => {
    const target = new EventEmitter();
    const logs = new LogCapture();
    let fatal = 0;
    installProcessGuards({
      log: createLogger({ level: 'info', destination: logs }),
      onFatal: () => fatal++,
      target: target as never,
    });
    target.emit('uncaughtException', new Error('bad'));
    target.emit('uncaughtException', new Error('worse'));
    expect(fatal).toBe(1);
    expect(logs.records().map((r) => r['level'])).toEqual(['fatal', 'fatal']);
  });
});
