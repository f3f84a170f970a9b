import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { NO_AUDIT } from '../../src/audit/auditLog.ts';
import type { Decision } from '../../src/authz/policy.ts';
import { loadConfig } from '../../src/config.ts';
import { ProxyTrust } from '../../src/forward/trust.ts';
import { silentLogger } from '../../src/log.ts';
import type { Metrics } from '../../src/metrics.ts';
import { createHotPath, type HotPathDeps } from '../../src/routes/hotPath.ts';
import { CookieNames } from '../../src/session/cookieNames.ts';
import type { ReplyHeaders, Valid } from '../../src/session/sessions.ts';

/**
 * The hot path of /auth on its own (routes/hotPath.ts): with fakes for the session service, the
 * authorizer and the upstream plan, it answers a hot session's allowed request synchronously and
 * declines — writing nothing — everything the full path must answer.
 */

const config = loadConfig({
  OIDC_ISSUER_URL: 'https://dex.example.com/',
  OIDC_CLIENT_ID: 'c',
  OIDC_CLIENT_SECRET: 's',
  COOKIE_SECRET: 'unit-test-cookie-secret-4f9a2c7e1b8d3056',
  COOKIE_SECURE: 'false',
});

function hotSession(setCookie?: string): Valid {
  return {
    kind: 'valid',
    ref: 'lookup',
    record: {
      idToken: 'id.token.value',
      tokenExp: Date.now() + 600_000,
      tokenIat: Date.now(),
      identity: {
        sub: 's',
        user: 'jane@example.com',
        email: 'jane@example.com',
        emailVerified: true,
        groups: ['dev'],
        name: undefined,
        preferredUsername: undefined,
      },
      cookie: 'c',
      rtHash: 'h',
      gen: 0,
    },
    sessionEnd: Date.now() + 3_600_000,
    degraded: false,
    refreshed: false,
    ...(setCookie ? { setCookie } : {}),
  };
}

interface Harness {
  readonly hot: ReturnType<typeof createHotPath>;
  readonly plans: number;
  readonly decisions: string[];
}

function harness(
  options: { session?: Valid | undefined; decision?: Decision; peekHosts?: (string | undefined)[] } = {},
): Harness {
  const session = 'session' in options ? options.session : hotSession();
  const built = new WeakMap<Valid, ReplyHeaders>();
  const state = { plans: 0, decisions: [] as string[] };
  const deps: HotPathDeps = {
    audit: NO_AUDIT,
    cookies: new CookieNames(config),
    trust: new ProxyTrust(['127.0.0.1/32']),
    sessions: {
      peekHot: (_cookie: string, host?: string) => {
        options.peekHosts?.push(host);
        return session;
      },
      replyHeaders: (s: Valid, build: () => ReplyHeaders) => {
        const known = built.get(s) ?? build();
        built.set(s, known);
        return known;
      },
    } as unknown as HotPathDeps['sessions'],
    authorizer: {
      decide: () => options.decision ?? { allowed: true },
    } as unknown as HotPathDeps['authorizer'],
    upstream: {
      plan: ({ token, identity }) => {
        state.plans++;
        return { Authorization: `Bearer ${token}`, 'X-Auth-Request-User': identity.user };
      },
      close() {},
    },
    metrics: { decision: (outcome: string) => state.decisions.push(outcome) } as unknown as Metrics,
    log: silentLogger(),
    clock: { now: () => Date.now() },
  };
  return {
    hot: createHotPath(deps, { kind: 'forward-auth', refuseImpersonation: false }),
    get plans() {
      return state.plans;
    },
    decisions: state.decisions,
  };
}

function request(headers: Record<string, string>, peer = '127.0.0.1'): IncomingMessage {
  return {
    method: 'GET',
    url: '/auth',
    socket: { remoteAddress: peer },
    headers: {
      'x-forwarded-method': 'GET',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'grafana.example.com',
      'x-forwarded-uri': '/d/abc',
      cookie: '_forward_auth=sealed-cookie-value',
      ...headers,
    },
  } as unknown as IncomingMessage;
}

function response(): ServerResponse & { status?: number; written?: unknown[] } {
  const res = {
    status: undefined as number | undefined,
    written: undefined as unknown[] | undefined,
    writeHead(status: number, headers: unknown[]) {
      res.status = status;
      res.written = headers;
      return res;
    },
    end() {
      return res;
    },
  };
  return res as unknown as ServerResponse & { status?: number; written?: unknown[] };
}

describe('the hot path', () => {
  it('answers a hot, allowed session with 200 and its upstream headers, built once per resolution', () => {
    const h = harness();
    for (let i = 0; i < 3; i++) {
      const res = response();
      expect(h.hot(request({}), res, performance.now())).toBe(true);
      expect(res.status).toBe(200);
      expect(res.written).toEqual([
        'Cache-Control',
        'no-store',
        'Content-Length',
        '0',
        'Authorization',
        'Bearer id.token.value',
        'X-Auth-Request-User',
        'jane@example.com',
      ]);
    }
    expect(h.plans).toBe(1);
    expect(h.decisions).toEqual(['allow', 'allow', 'allow']);
  });

  it('hands over the rotated cookie the cached resolution carries', () => {
    const res = response();
    expect(harness({ session: hotSession('rotated') }).hot(request({}), res, 0)).toBe(true);
    const written = res.written as string[];
    const at = written.indexOf('Set-Cookie');
    expect(written[at + 1]).toMatch(/^_forward_auth=rotated; /);
  });

  it('asks the session service about the forwarded host (host-bound sessions)', () => {
    const hosts: (string | undefined)[] = [];
    harness({ peekHosts: hosts }).hot(request({}), response(), 0);
    expect(hosts).toEqual(['grafana.example.com']);
  });

  const declined: [string, Parameters<typeof harness>[0], Record<string, string>, string?][] = [
    ['a bearer token', {}, { authorization: 'Bearer x.y.z' }],
    ['no session cookie', {}, { cookie: 'other=1' }],
    ['the session cookie twice', {}, { cookie: '_forward_auth=a; _forward_auth=b' }],
    ['an /oauth2/ path on the protected host', {}, { 'x-forwarded-uri': '/oauth2/sign_out' }],
    ['a session that is not hot', { session: undefined }, {}],
    ['a denial', { decision: { allowed: false, code: 'forbidden', reason: 'no' } }, {}],
    ['a peer outside TRUSTED_PROXIES', {}, {}, '10.1.2.3'],
    ['no X-Forwarded-Uri (not a subrequest)', {}, { 'x-forwarded-uri': '' }],
  ];
  for (const [what, options, headers, peer] of declined) {
    it(`leaves ${what} to the full path, writing nothing`, () => {
      const h = harness(options);
      const req = request(headers, peer);
      if (headers['x-forwarded-uri'] === '') delete req.headers['x-forwarded-uri'];
      const res = response();
      expect(h.hot(req, res, 0)).toBe(false);
      expect(res.status).toBeUndefined();
      expect(h.decisions).toEqual([]);
    });
  }
});
