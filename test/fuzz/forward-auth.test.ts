import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OriginalRequest } from '../../src/forward/original.ts';
import { ReturnUrlGuard } from '../../src/forward/returnUrl.ts';
import { LoopBreaker } from '../../src/security/loopBreaker.ts';
import { clientKey } from '../../src/security/rateLimiter.ts';
import { CookieNames } from '../../src/session/cookieNames.ts';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * Property-based fuzzing of the forward-auth decision with fast-check. Thousands of generated
 * requests — hostile cookies, X-Forwarded-*, Authorization, Accept, methods — against a running
 * service with real Dex and Redis behind it. For every one: never a 5xx, never a 2xx without a
 * valid session or bearer token, never a Location outside the allowed domains, always no-store.
 * Sized to keep the whole file well under a minute.
 */

const ALLOWED = '.example.com';
const RUNS = Number(process.env['FUZZ_RUNS'] ?? 1500);

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;

let stack: Stack;
let appHost: string;
let validCookie: string;
let unverifiedCookie: string;
let validToken: string;
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

async function sessionOf(user: typeof admin): Promise<string> {
  const browser = new Browser({ navigation: true });
  await loginThroughDex(browser, `${stack.appUrl}/fuzz`, user);
  return browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
}

beforeAll(async () => {
  stack = await startStack({ env: { ALLOWED_REDIRECT_DOMAINS: ALLOWED, LOG_LEVEL: 'warn' } });
  appHost = new URL(stack.appUrl).host;
  validCookie = await sessionOf(admin);
  validToken = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!.slice('Bearer '.length);
  unverifiedCookie = await sessionOf(unverified);
});
afterAll(async () => {
  agent.destroy();
  await stack?.close();
});

// ---- generators ------------------------------------------------------------------------------

/** Characters a header value may carry on the wire (Node refuses the rest client-side). */
const HOSTILE = [
  ...'abcxyzABC019-_.~',
  ...'/\\@%:;,?#&=+!$\'"`<>()[]{}|^* \t',
  '%2f',
  '%2F',
  '%5c',
  '%00',
  '%0d%0a',
  '%40',
  '..',
  '//',
  '\u00e9',
  '\u00ff',
  '\u0080',
];
const hostileText = (max = 40) => fc.string({ unit: fc.constantFrom(...HOSTILE), maxLength: max });

const evilHosts = [
  'evil.com',
  'example.com.evil.com',
  'evilexample.com',
  'app.example.com@evil.com',
  'grafana.example.com',
  'app.localhost',
  '127.0.0.1',
  '[::1]',
  'localhost:1',
  'a..b',
  '',
];

const rdValue = fc.oneof(
  fc.constantFrom(
    '//evil.com',
    '/\\evil.com',
    'https://evil.com',
    'https://app.example.com@evil.com',
    'javascript:alert(1)',
    '/ok',
    'https://grafana.example.com/x',
    'https:/\\evil.com',
    '/%2f%2fevil.com',
  ),
  fc
    .tuple(
      fc.constantFrom('http://', 'https://', '//', '/', ''),
      fc.constantFrom(...evilHosts),
      hostileText(12),
    )
    .map(([a, b, c]) => a + b + c),
  hostileText(),
);

const forwardedUri = fc.oneof(
  fc.constantFrom('/', '/dash', '/api/v1/things?x=1', '/favicon.ico', '/oauth2/userinfo', '/oauth2/'),
  rdValue.map((rd) => `/oauth2/start?rd=${encodeURIComponent(rd)}`),
  rdValue.map((rd) => `/oauth2/sign_out?rd=${encodeURIComponent(rd)}`),
  fc
    .tuple(hostileText(20), hostileText(20))
    .map(
      ([code, state]) =>
        `/oauth2/callback?code=${encodeURIComponent(code)}&state=${encodeURIComponent(state)}`,
    ),
  hostileText().map((t) => `/${t}`),
  hostileText(),
);

type CookieKind = 'none' | 'valid' | 'unverified' | 'mangled' | 'random' | 'shadowed' | 'many';
const cookieKind = fc.constantFrom<CookieKind>(
  'none',
  'valid',
  'unverified',
  'mangled',
  'random',
  'shadowed',
  'many',
);
const mangle = fc.tuple(fc.nat(), fc.constantFrom('flip', 'cut', 'append', 'prefix'));

const authorization = fc.oneof(
  fc.constant(undefined),
  fc.constant('valid'),
  fc.constantFrom('Bearer ', 'bearer ', 'Basic ', 'Bearer', 'Token ').chain((scheme) =>
    fc.oneof(
      hostileText().map((t) => scheme + t),
      fc.constantFrom('eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.', 'a.b.c', '...').map((t) => scheme + t),
    ),
  ),
  fc.constant('mangled-token'),
);

const requestArb = fc.record({
  path: fc.constantFrom('/auth', '/oauth2/auth'),
  method: fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'),
  // The valid session a quarter of the time (else one in seven), for the same reason as `host`.
  cookie: fc.oneof(
    { arbitrary: fc.constant<CookieKind>('valid'), weight: 2 },
    { arbitrary: cookieKind, weight: 6 },
  ),
  mangle,
  randomCookie: hostileText(60),
  authorization,
  proto: fc.option(
    fc.oneof(fc.constantFrom('http', 'https', 'ws', 'wss', 'HTTPS', 'gopher'), hostileText(8)),
    { nil: undefined, freq: 2 },
  ),
  // Weighted towards the well-formed values (the protected host; a header left out half the time
  // rather than a fifth) so that a valid session meets an otherwise well-formed request in every
  // run, not only in most (the meta-check below failed once in CI with none among 1,500).
  host: fc.option(
    fc.oneof(
      { arbitrary: fc.constant('APP'), weight: 3 },
      fc.constantFrom(...evilHosts),
      hostileText(20),
      fc.constantFrom('app.localhost:80', 'APP.LOCALHOST', 'app.localhost.', 'x.example.com:443'),
    ),
    { nil: undefined },
  ),
  uri: fc.option(forwardedUri, { nil: undefined, freq: 2 }),
  xMethod: fc.option(fc.oneof(fc.constantFrom('GET', 'POST', 'get', 'HEAD', 'G E T'), hostileText(8)), {
    nil: undefined,
    freq: 2,
  }),
  xff: fc.option(
    fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), hostileText(10)), { maxLength: 4 }).map((a) => a.join(', ')),
    ),
    { nil: undefined, freq: 2 },
  ),
  accept: fc.option(
    fc.oneof(
      fc.constantFrom('text/html,application/xhtml+xml', 'application/json', '*/*', 'image/*', 'text/html'),
      hostileText(20),
    ),
    { nil: undefined },
  ),
  fetchMode: fc.option(fc.constantFrom('navigate', 'cors', 'no-cors', 'same-origin', 'websocket'), {
    nil: undefined,
  }),
  fetchDest: fc.option(fc.constantFrom('document', 'image', 'empty', 'iframe', 'script'), { nil: undefined }),
  xhr: fc.boolean(),
});

type Generated = typeof requestArb extends fc.Arbitrary<infer T> ? T : never;

function mangled(value: string, [n, how]: [number, string]): string {
  const at = value.length === 0 ? 0 : n % value.length;
  switch (how) {
    case 'flip':
      return `${value.slice(0, at)}${value[at] === 'A' ? 'B' : 'A'}${value.slice(at + 1)}`;
    case 'cut':
      return value.slice(0, at);
    case 'append':
      return `${value}x`;
    default:
      return `x${value}`;
  }
}

interface Built {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  /** The request carried credentials that may legitimately be allowed. */
  readonly credential: boolean;
  readonly ownHost: string;
}

function build(g: Generated): Built {
  const headers: Record<string, string> = {};
  const signsOut = g.uri?.startsWith('/oauth2/sign_out') ?? false;
  // Never sign the shared valid session out: that would only make later runs less interesting.
  const kind: CookieKind = signsOut && g.cookie === 'valid' ? 'mangled' : g.cookie;
  let credential = false;
  switch (kind) {
    case 'valid':
      headers['cookie'] = `_forward_auth=${validCookie}`;
      credential = true;
      break;
    case 'unverified':
      headers['cookie'] = `other=1; _forward_auth=${unverifiedCookie}`;
      break;
    case 'mangled':
      headers['cookie'] = `_forward_auth=${mangled(validCookie, g.mangle)}`;
      break;
    case 'random':
      headers['cookie'] = g.randomCookie;
      break;
    case 'shadowed':
      headers['cookie'] = `_forward_auth=${g.randomCookie.replaceAll(';', '')}; _forward_auth=${validCookie}`;
      credential = true;
      break;
    case 'many':
      headers['cookie'] = Array.from(
        { length: 8 },
        (_, i) => `_forward_auth_login_${i}=${g.randomCookie}`,
      ).join('; ');
      break;
    default:
      break;
  }
  if (g.authorization === 'valid') {
    headers['authorization'] = `Bearer ${validToken}`;
    credential = true;
  } else if (g.authorization === 'mangled-token') {
    headers['authorization'] = `Bearer ${mangled(validToken, g.mangle)}`;
  } else if (g.authorization !== undefined) {
    headers['authorization'] = g.authorization;
  }
  if (g.proto !== undefined) headers['x-forwarded-proto'] = g.proto;
  if (g.host !== undefined) headers['x-forwarded-host'] = g.host === 'APP' ? appHost : g.host;
  if (g.uri !== undefined) headers['x-forwarded-uri'] = g.uri;
  if (g.xMethod !== undefined) headers['x-forwarded-method'] = g.xMethod;
  if (g.xff !== undefined) headers['x-forwarded-for'] = g.xff;
  if (g.accept !== undefined) headers['accept'] = g.accept;
  if (g.fetchMode !== undefined) headers['sec-fetch-mode'] = g.fetchMode;
  if (g.fetchDest !== undefined) headers['sec-fetch-dest'] = g.fetchDest;
  if (g.xhr) headers['x-requested-with'] = 'XMLHttpRequest';
  // The first X-Forwarded-Host entry names the host; without one, the request's own Host header.
  const forwardedHost = (headers['x-forwarded-host'] ?? '').split(',')[0]!.trim();
  const ownHost = (forwardedHost || `127.0.0.1:${stack.service.port}`).toLowerCase();
  return { method: g.method, path: g.path, headers, credential, ownHost };
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
}

function send(b: Built): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: stack.service.port,
        method: b.method,
        path: b.path,
        headers: b.headers,
        agent,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function hostAllowed(host: string, own: string): boolean {
  const h = host.toLowerCase();
  const normalisedOwn = own
    .replace(/\.$/, '')
    .replace(/\.(:\d+)$/, '$1')
    .replace(/:(80|443)$/, '');
  if (h === normalisedOwn || h === own) return true;
  try {
    // As a URL parser reads it ("9" is the IPv4 address 0.0.0.9).
    if (h === new URL(`http://${normalisedOwn}`).host) return true;
  } catch {
    // not a host a URL can carry
  }
  const name = h.replace(/:\d+$/, '');
  return name === ALLOWED.slice(1) || name.endsWith(ALLOWED);
}

// ---- properties ------------------------------------------------------------------------------

describe('fuzzing /auth and /oauth2/auth', () => {
  it(`holds the forward-auth contract for ${RUNS} generated requests`, async () => {
    const dex = new URL(stack.dex.issuer);
    let allowed = 0;
    let redirected = 0;
    /** What the requests carrying the valid credential got (said when none was allowed). */
    const credentialed = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(requestArb, async (g) => {
        const b = build(g);
        const answer = await send(b);
        const { status, headers } = answer;
        const context = `${b.method} ${b.path} ${JSON.stringify(b.headers)} → ${status}`;
        if (b.credential && credentialed.size < 50) {
          const key = `${b.method} ${b.path} ${b.headers['x-forwarded-uri'] ?? '-'} → ${status}`;
          credentialed.set(key, (credentialed.get(key) ?? 0) + 1);
        }

        expect(status, context).toBeGreaterThanOrEqual(200);
        expect(status, context).toBeLessThan(500);
        expect(headers['cache-control'], context).toBe('no-store');

        if (status >= 200 && status < 300) {
          allowed++;
          expect(b.credential, `2xx without a valid session: ${context}`).toBe(true);
          for (const name of [
            'authorization',
            'x-auth-request-user',
            'x-auth-request-email',
            'x-auth-request-groups',
          ])
            expect(headers[name], `${name} missing: ${context}`).toBeDefined();
          expect(headers['authorization']).toBe(`Bearer ${validToken}`);
        }

        const location = headers['location'];
        if (typeof location === 'string') {
          redirected++;
          const url = new URL(location);
          expect(['http:', 'https:'], context).toContain(url.protocol);
          expect(url.username + url.password, context).toBe('');
          if (url.host === dex.host) {
            const redirectUri = new URL(url.searchParams.get('redirect_uri')!);
            expect(hostAllowed(redirectUri.host, b.ownHost), context).toBe(true);
          } else {
            expect(hostAllowed(url.host, b.ownHost), `Location outside the allowed domains: ${context}`).toBe(
              true,
            );
          }
          expect(status, context).toBe(302);
        }

        const cookies = headers['set-cookie'] ?? [];
        for (const line of cookies) {
          expect(line, context).toMatch(/^_forward_auth[A-Za-z0-9_-]*=[^;\s]*; Path=\//);
          expect(line, context).toContain('HttpOnly');
          expect(line, context).toContain('SameSite=Lax');
        }
      }),
      { numRuns: RUNS, interruptAfterTimeLimit: 40_000 },
    );
    // The generators reach the interesting answers, not just 400s.
    expect(allowed, JSON.stringify([...credentialed])).toBeGreaterThan(0);
    expect(redirected).toBeGreaterThan(0);
  }, 60_000);

  it('answers raw requests with control characters and odd bytes in headers with 400, never a 5xx', async () => {
    const line = fc.tuple(
      fc.constantFrom(
        'X-Forwarded-Host',
        'X-Forwarded-Uri',
        'X-Forwarded-For',
        'Cookie',
        'Authorization',
        'Accept',
      ),
      fc.uint8Array({ minLength: 1, maxLength: 30 }),
    );
    await fc.assert(
      fc.asyncProperty(line, async ([name, bytes]) => {
        const raw = await rawExchange(
          Buffer.concat([
            Buffer.from(`GET /auth HTTP/1.1\r\nHost: auth\r\nAccept: text/html\r\n${name}: `),
            Buffer.from(bytes),
            Buffer.from('\r\nConnection: close\r\n\r\n'),
          ]),
        );
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
        expect(status, JSON.stringify([name, [...bytes]])).toBeGreaterThanOrEqual(200);
        expect(status, JSON.stringify([name, [...bytes]])).toBeLessThan(500);
        expect(raw.toLowerCase()).not.toMatch(/\r\nset-cookie: (?!_forward_auth)/);
      }),
      { numRuns: 300, interruptAfterTimeLimit: 15_000 },
    );
  }, 30_000);
});

function rawExchange(bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(stack.service.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(error),
    );
    socket.setTimeout(5_000, () => socket.destroy(new Error('timed out')));
    socket.write(bytes);
  });
}

describe('fuzzing the pure guards', () => {
  const original = { proto: 'https', host: 'app.example.com' } as OriginalRequest;
  const guard = new ReturnUrlGuard(['.example.com', 'dash.example.org']);
  const allowedHost = (host: string) =>
    host === 'app.example.com' ||
    host === 'example.com' ||
    host.endsWith('.example.com') ||
    host === 'dash.example.org' ||
    /^(app\.example\.com|(.+\.)?example\.com|dash\.example\.org):\d+$/.test(host);

  it('the return-URL guard only ever yields a normalised http(s) URL on an allowed host', () => {
    const candidate = fc.oneof(
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc.webUrl().map((u) => u.replace('://', '://app.example.com@')),
      fc
        .tuple(
          fc.constantFrom('http://', 'https://', '//', '/', '\\\\', 'https:', ''),
          fc.constantFrom(...evilHosts, 'example.com', 'x.example.com', 'dash.example.org'),
          hostileText(20),
        )
        .map(([a, b, c]) => a + b + c),
      fc.string({ unit: 'binary', maxLength: 60 }),
      hostileText(60),
    );
    fc.assert(
      fc.property(candidate, (c) => {
        const out = guard.check(c, original);
        if (out === undefined) return;
        expect(out).toMatch(/^https?:\/\/[\x21-\x7e]+$/);
        const url = new URL(out);
        expect(url.href).toBe(out);
        expect(url.username + url.password).toBe('');
        expect(allowedHost(url.host), `${JSON.stringify(c)} → ${out}`).toBe(true);
        // A browser given the raw candidate would land on the same host.
        expect(new URL(c, 'https://app.example.com/here').host.replace(/\.$/, '')).toBe(url.host);
      }),
      { numRuns: 20_000 },
    );
  });

  it('the loop cookie parser and the rate-limit key never throw on any input', () => {
    const breaker = new LoopBreaker(
      { limit: 3, windowMs: 120_000 },
      new CookieNames({ cookieName: '_forward_auth', cookieDomain: undefined, cookieSecure: false }),
    );
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.string({ maxLength: 100 }),
        (cookie, target) => {
          const header = `_forward_auth_loop=${cookie}`;
          expect(breaker.check(header, target, Date.now()).looping).toBe(false);
          const [set] = breaker.completed(header, target, Date.now());
          expect(set).toMatch(/^_forward_auth_loop=[0-9a-z.~]+; Path=\//);
          expect(clientKey(cookie).length).toBeLessThanOrEqual(64);
        },
      ),
      { numRuns: 5_000 },
    );
  });
});
