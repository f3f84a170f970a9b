import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyAuthorizer } from '../../src/authz/authorizer.ts';
import { isNavigation } from '../../src/forward/navigation.ts';
import { type OriginalRequest, readOriginalRequest } from '../../src/forward/original.ts';
import { judgedPath } from '../../src/forward/path.ts';
import { ReturnUrlGuard } from '../../src/forward/returnUrl.ts';
import { readSubrequest } from '../../src/forward/subrequest.ts';
import { ProxyTrust } from '../../src/forward/trust.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger } from '../../src/log.ts';

const trust = new ProxyTrust(['127.0.0.0/8', '10.0.0.0/8']);

function req(
  headers: Record<string, string>,
  remoteAddress = '127.0.0.1',
  url = '/auth',
  method = 'GET',
): IncomingMessage {
  return { headers, method, url, socket: { remoteAddress } } as unknown as IncomingMessage;
}

describe('reading the original request of a browser endpoint', () => {
  it('takes method, proto, host and uri from a trusted proxy', () => {
    const o = readOriginalRequest(
      req({
        host: 'auth:4180',
        'x-forwarded-method': 'POST',
        'x-forwarded-proto': 'https',
        'x-forwarded-host': 'Grafana.Example.com',
        'x-forwarded-uri': '/d/abc?orgId=1',
        'x-forwarded-for': '203.0.113.7, 10.1.2.3',
      }),
      trust,
    );
    expect(o).toMatchObject({
      method: 'POST',
      proto: 'https',
      host: 'grafana.example.com',
      uri: '/d/abc?orgId=1',
      path: '/d/abc',
      query: '?orgId=1',
      url: 'https://grafana.example.com/d/abc?orgId=1',
      clientIp: '203.0.113.7',
      forwarded: true,
    });
  });

  it('ignores X-Forwarded-* from an untrusted peer', () => {
    const o = readOriginalRequest(
      req(
        { host: 'svc:4180', 'x-forwarded-host': 'evil.example', 'x-forwarded-for': '1.2.3.4' },
        '198.51.100.9',
        '/x',
      ),
      trust,
    );
    expect(o.host).toBe('svc:4180');
    expect(o.clientIp).toBe('198.51.100.9');
    expect(o.forwarded).toBe(false);
  });

  it('drops the default port and maps ws/wss', () => {
    const o = readOriginalRequest(
      req({ 'x-forwarded-proto': 'wss', 'x-forwarded-host': 'app.example.com:443', 'x-forwarded-uri': '/' }),
      trust,
    );
    expect(o.proto).toBe('https');
    expect(o.host).toBe('app.example.com');
  });

  it.each([
    ['a CRLF in the host', { 'x-forwarded-host': 'a.example.com\r\nSet-Cookie: x=1' }],
    ['a space in the uri', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-uri': '/a b' }],
    ['a relative uri', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-uri': 'http://evil/' }],
    ['an odd proto', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-proto': 'javascript' }],
    ['a userinfo host', { 'x-forwarded-host': 'user@a.example.com' }],
    ['a bad method', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-method': 'G E T' }],
  ])('rejects %s with a 400', (_name, headers) => {
    expect(() => readOriginalRequest(req(headers), trust)).toThrowError(
      expect.objectContaining({ status: 400 }),
    );
  });
});

/** The headers Traefik's ForwardAuth (mode F) writes for GET https://grafana.example.com/d/abc. */
const TRAEFIK = {
  host: 'dex-forward-auth.auth.svc:4180',
  'x-forwarded-method': 'GET',
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'grafana.example.com',
  'x-forwarded-uri': '/d/abc?orgId=1',
  'x-forwarded-for': '203.0.113.7',
};
/** What ingress-nginx's auth location writes for the same request (nginx.tmpl). */
const INGRESS_NGINX = {
  host: 'dex-forward-auth.auth.svc:4180',
  'x-original-url': 'https://grafana.example.com/d/abc?orgId=1',
  'x-original-method': 'GET',
  'x-sent-from': 'nginx-ingress-controller',
  'x-real-ip': '203.0.113.7',
  'x-forwarded-for': '203.0.113.7',
  'x-auth-request-redirect': '/d/abc?orgId=1',
};
const SAME_REQUEST = {
  method: 'GET',
  proto: 'https',
  host: 'grafana.example.com',
  uri: '/d/abc?orgId=1',
  path: '/d/abc',
  clientIp: '203.0.113.7',
  forwarded: true,
};
const FORWARD_AUTH = { kind: 'forward-auth', refuseImpersonation: false } as const;
const AUTH_REQUEST = { kind: 'auth-request', refuseImpersonation: false } as const;
const refusedAs = (code: string) => expect.objectContaining({ status: 400, code });

describe('reading a decision request (a forward-auth subrequest)', () => {
  it('on /auth, takes the request from the X-Forwarded-* Traefik and Caddy write', () => {
    expect(readSubrequest(req(TRAEFIK), trust, FORWARD_AUTH)).toMatchObject(SAME_REQUEST);
  });

  it('on /auth, ignores X-Original-* a client sent through Traefik or Caddy', () => {
    const smuggled = {
      ...TRAEFIK,
      'x-original-url': 'https://public.example.com/open',
      'x-original-uri': '/open',
      'x-original-method': 'OPTIONS',
    };
    expect(readSubrequest(req(smuggled), trust, FORWARD_AUTH)).toMatchObject(SAME_REQUEST);
  });

  it('on /oauth2/auth, takes the request from the X-Original-URL and -Method ingress-nginx writes', () => {
    expect(readSubrequest(req(INGRESS_NGINX), trust, AUTH_REQUEST)).toMatchObject(SAME_REQUEST);
  });

  it('on /oauth2/auth behind ingress-nginx, ignores the X-Forwarded-Host, -Method and -Proto a client sent', () => {
    const smuggled = {
      ...INGRESS_NGINX,
      'x-forwarded-host': 'public.example.com',
      'x-forwarded-method': 'OPTIONS',
      'x-forwarded-proto': 'http',
    };
    expect(readSubrequest(req(smuggled), trust, AUTH_REQUEST)).toMatchObject(SAME_REQUEST);
  });

  it('on /oauth2/auth, refuses X-Forwarded-Uri next to X-Original-URL: one of the two is a client header', () => {
    const smuggled = { ...INGRESS_NGINX, 'x-forwarded-uri': '/open' };
    expect(() => readSubrequest(req(smuggled), trust, AUTH_REQUEST)).toThrowError(
      refusedAs('invalid_forwarded_request'),
    );
    const other = { ...TRAEFIK, 'x-original-url': 'https://public.example.com/open' };
    expect(() => readSubrequest(req(other), trust, AUTH_REQUEST)).toThrowError(
      refusedAs('invalid_forwarded_request'),
    );
  });

  it('on /oauth2/auth, accepts the X-Original-URI that ingress-nginx adds with auth-method when it names the same request', () => {
    const withMethod = { ...INGRESS_NGINX, 'x-original-uri': '/d/abc?orgId=1', 'x-scheme': 'https' };
    expect(readSubrequest(req(withMethod), trust, AUTH_REQUEST)).toMatchObject(SAME_REQUEST);
    const disagreeing = { ...INGRESS_NGINX, 'x-original-uri': '/open' };
    expect(() => readSubrequest(req(disagreeing), trust, AUTH_REQUEST)).toThrowError(
      refusedAs('invalid_forwarded_request'),
    );
  });

  it('on /oauth2/auth, reads nginx’s X-Original-URI with the host nginx sends as Host', () => {
    const o = readSubrequest(
      req({ host: 'grafana.example.com', 'x-original-uri': '/d/abc?orgId=1', 'x-original-method': 'POST' }),
      trust,
      AUTH_REQUEST,
    );
    expect(o).toMatchObject({ method: 'POST', host: 'grafana.example.com', uri: '/d/abc?orgId=1' });
  });

  it('on /oauth2/auth, still reads X-Forwarded-* (older nginx configurations, Caddy) and then ignores X-Original-Method', () => {
    const o = readSubrequest(req({ ...TRAEFIK, 'x-original-method': 'OPTIONS' }), trust, AUTH_REQUEST);
    expect(o).toMatchObject(SAME_REQUEST);
  });

  it('with UPSTREAM_AUTH=impersonate, refuses a subrequest carrying a client’s Impersonate-* header (nginx cannot strip them)', () => {
    const policy = { kind: 'auth-request', refuseImpersonation: true } as const;
    expect(readSubrequest(req(INGRESS_NGINX), trust, policy)).toMatchObject(SAME_REQUEST);
    for (const name of ['impersonate-user', 'impersonate-group', 'impersonate-extra-scopes']) {
      expect(() =>
        readSubrequest(req({ ...INGRESS_NGINX, [name]: 'system:masters' }), trust, policy),
      ).toThrowError(expect.objectContaining({ status: 400 }));
    }
    expect(
      readSubrequest(req({ ...INGRESS_NGINX, 'impersonate-extra-scopes': 'x' }), trust, AUTH_REQUEST),
    ).toMatchObject(SAME_REQUEST);
  });

  it.each([
    ['another scheme', 'javascript://grafana.example.com/x'],
    ['userinfo', 'https://user@grafana.example.com/x'],
    ['no path', 'https://grafana.example.com'],
    ['a space', 'https://grafana.example.com/a b'],
    ['two values', 'https://grafana.example.com/a, https://public.example.com/b'],
  ])('refuses an X-Original-URL with %s', (_name, url) => {
    expect(() =>
      readSubrequest(req({ ...INGRESS_NGINX, 'x-original-url': url }), trust, AUTH_REQUEST),
    ).toThrowError(expect.objectContaining({ status: 400 }));
  });

  it.each([
    ['/auth', 'forward-auth', {}],
    [
      '/auth, with only the X-Original-* of another proxy',
      'forward-auth',
      { 'x-original-url': 'https://a.example.com/' },
    ],
    ['/oauth2/auth', 'auth-request', { 'x-forwarded-host': 'a.example.com', 'x-forwarded-proto': 'https' }],
  ] as const)(
    'refuses a call to %s that is no subrequest (no X-Forwarded-Uri/X-Original-URL/-URI)',
    (_n, kind, headers) => {
      expect(() =>
        readSubrequest(req({ host: 'svc:4180', ...headers }), trust, { kind, refuseImpersonation: false }),
      ).toThrowError(refusedAs('not_a_forward_auth_request'));
    },
  );

  it.each(['forward-auth', 'auth-request'] as const)(
    'refuses a %s subrequest from a peer outside TRUSTED_PROXIES, whatever it sends',
    (kind) => {
      for (const headers of [TRAEFIK, INGRESS_NGINX]) {
        expect(() =>
          readSubrequest(req(headers, '198.51.100.9'), trust, { kind, refuseImpersonation: false }),
        ).toThrowError(refusedAs('not_a_forward_auth_request'));
      }
    },
  );
});

describe('what a decision keeps of the request', () => {
  // The original request outlives the IncomingMessage (audit lines, hot slots, and objects V8
  // allocates straight into the old generation): holding the message would keep every request's
  // objects through the young collections (issue 15).
  const collect = (): void => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    gc();
  };

  /** A subrequest read, and a weak reference to the IncomingMessage it was read from. */
  const readOne = () => {
    const message = req({ ...TRAEFIK, 'x-forwarded-for': '203.0.113.9' });
    return { held: new WeakRef(message), original: readSubrequest(message, trust, FORWARD_AUTH) };
  };

  it('holds the strings it needs, not the IncomingMessage, and still names the client', async () => {
    const { held, original } = readOne();
    // A WeakRef's target is kept until the job that made it is over.
    await new Promise((resolve) => setImmediate(resolve));
    collect();
    expect(held.deref()).toBeUndefined();
    expect(original).toMatchObject({ ...SAME_REQUEST, clientIp: '203.0.113.9' });
  });
});

describe('the path the policy judges', () => {
  it.each([
    ['/admin', '/admin'],
    ['/%61dmin', '/admin'],
    ['/%41dmin', '/Admin'],
    ['//admin', '/admin'],
    ['/a//b/', '/a/b/'],
    ['/admin;jsessionid=1', '/admin'],
    ['/admin;x/users', '/admin/users'],
    ['/admin%3Bx', '/admin'],
    ['/admin%2Fusers', '/admin/users'],
    ['/;x/admin', '/admin'],
    ['/ADMIN', '/ADMIN'],
    ['/admin.', '/admin.'],
    ['/.well-known/x', '/.well-known/x'],
    ['/100%25', '/100%25'],
    ['/caf%C3%A9', '/café'],
    ['/%EF%BC%A1dmin', '/Ａdmin'],
    ['/docs/%EF%BC%8Ebashrc', '/docs/．bashrc'],
    ['/', '/'],
  ])('%s is judged as %s', (raw, judged) => {
    expect(judgedPath(raw)).toBe(judged);
  });

  it.each([
    ['a fragment', '/admin#x'],
    ['an encoded fragment', '/admin%23x'],
    ['an encoded query', '/admin%3Fx'],
    ['a backslash', '/admin\\x'],
    ['an encoded backslash', '/x%5C..%5Cadmin'],
    ['a dot segment', '/./admin'],
    ['a dot-dot segment', '/x/../admin'],
    ['an encoded dot-dot segment', '/x/%2e%2e/admin'],
    ['a dot-dot hidden behind ;', '/public/..;/admin'],
    ['a dot-dot behind encoded slashes', '/public%2F..%2Fadmin'],
    ['double encoding', '/%2561dmin'],
    ['a bad escape', '/%zz'],
    ['an encoded NUL', '/admin%00'],
    ['invalid UTF-8', '/%ff'],
    ['a fullwidth dot-dot segment', '/x/%EF%BC%8E%EF%BC%8E/admin'],
    ['a raw fullwidth dot-dot segment', '/x/\uff0e\uff0e/admin'],
    ['a dot leader and a full stop', '/x/%E2%80%A4./admin'],
    ['a fullwidth solidus', '/public%EF%BC%8F..%EF%BC%8Fadmin'],
    ['a fullwidth reverse solidus', '/x%EF%BC%BCadmin'],
  ])('refuses %s (%s) with 400', (_name, raw) => {
    expect(() => judgedPath(raw)).toThrowError(expect.objectContaining({ status: 400 }));
  });
});

describe('a rule on /admin, through every spelling of the path', () => {
  let dir: string;
  let authorizer: PolicyAuthorizer;
  const naming = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: '' };
  const dev = identityFromClaims(
    { sub: 'd', email: 'dev@example.com', email_verified: true, groups: ['dev'] },
    naming,
  );
  const admin = identityFromClaims(
    { sub: 'a', email: 'ad@example.com', email_verified: true, groups: ['admins'] },
    naming,
  );

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dfa-path-'));
    writeFileSync(
      join(dir, 'policy.yaml'),
      'default: allow\nrules:\n  - path: /admin\n    allow: { groups: [admins] }\n',
    );
    authorizer = new PolicyAuthorizer({
      path: join(dir, 'policy.yaml'),
      log: createLogger({ level: 'silent' }),
    });
  });
  afterAll(async () => {
    await authorizer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** allowed / denied / refused (400) for the request Traefik would forward for `uri`. */
  const judge = (identity: typeof dev, uri: string): 'allowed' | 'denied' | 'refused' => {
    try {
      const original = readSubrequest(req({ ...TRAEFIK, 'x-forwarded-uri': uri }), trust, FORWARD_AUTH);
      return authorizer.decide(identity, original).allowed ? 'allowed' : 'denied';
    } catch (error) {
      expect(error).toMatchObject({ status: 400 });
      return 'refused';
    }
  };

  it.each([
    '/admin',
    '/admin/',
    '/admin/users?x=1',
    '/%61dmin',
    '//admin',
    '/admin;x',
    '/admin%3Bx',
    '/admin%2Fusers',
    '/./admin',
    '/x/../admin',
    '/x/%2E%2E/admin',
    '/public/..;/admin',
    '/admin#x',
    '/admin%23x',
    '/%2561dmin',
    '/admin%5Cx',
  ])('%s is never allowed for someone outside the rule', (uri) => {
    expect(judge(dev, uri)).not.toBe('allowed');
  });

  it('while the rule still lets its group in, and other paths stay open', () => {
    expect(judge(admin, '/admin;x')).toBe('allowed');
    expect(judge(dev, '/administrator')).toBe('allowed');
    expect(judge(dev, '/public/admin')).toBe('allowed');
  });
});
describe('navigation detection', () => {
  const nav = {
    accept: 'text/html,application/xhtml+xml',
    'sec-fetch-mode': 'navigate',
    'sec-fetch-dest': 'document',
  };
  it('treats a top-level document GET as a navigation', () => {
    expect(isNavigation('GET', nav)).toBe(true);
    expect(isNavigation('HEAD', { accept: 'text/html' })).toBe(true);
  });
  it.each([
    ['XHR', 'GET', { ...nav, 'x-requested-with': 'XMLHttpRequest' }],
    ['fetch()', 'GET', { ...nav, 'sec-fetch-mode': 'cors' }],
    ['an image', 'GET', { accept: 'image/avif,image/webp,*/*', 'sec-fetch-dest': 'image' }],
    ['a favicon without fetch metadata', 'GET', { accept: 'image/*' }],
    ['a POST', 'POST', nav],
    ['an iframe', 'GET', { ...nav, 'sec-fetch-dest': 'iframe' }],
    ['a JSON API call', 'GET', { accept: 'application/json' }],
    // WebSocket handshakes, as each proxy passes them to the check, with a page's Accept header.
    [
      'a WebSocket upgrade (Caddy: Upgrade passed)',
      'GET',
      { accept: 'text/html', connection: 'Upgrade', upgrade: 'websocket' },
    ],
    [
      'a WebSocket upgrade (Traefik: X-Forwarded-Proto ws)',
      'GET',
      { accept: 'text/html', 'x-forwarded-proto': 'ws' },
    ],
    [
      'a WebSocket upgrade over TLS (Traefik: wss)',
      'GET',
      { accept: 'text/html', 'x-forwarded-proto': 'wss' },
    ],
    [
      'a WebSocket handshake (nginx: only Sec-WebSocket-*)',
      'GET',
      { accept: 'text/html', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    ],
    ['a WebSocket handshake (version only)', 'GET', { accept: 'text/html', 'sec-websocket-version': '13' }],
    ['a browser’s WebSocket', 'GET', { accept: 'text/html', 'sec-fetch-mode': 'websocket' }],
  ])('does not treat %s as a navigation', (_n, method, headers) => {
    expect(isNavigation(method, headers)).toBe(false);
  });
  it('still treats an upgrade to something else, and plain http/https, as a navigation', () => {
    expect(isNavigation('GET', { ...nav, upgrade: 'h2c', connection: 'Upgrade' })).toBe(true);
    expect(isNavigation('GET', { ...nav, 'x-forwarded-proto': 'https' })).toBe(true);
  });
});

describe('return URL guard', () => {
  const original = { proto: 'https', host: 'app.example.com' } as OriginalRequest;
  const guard = new ReturnUrlGuard(['.example.com', 'dash.other.org']);
  const ownOnly = new ReturnUrlGuard([]);

  it.each([
    ['/path?x=1', 'https://app.example.com/path?x=1'],
    ['https://grafana.example.com/d/1', 'https://grafana.example.com/d/1'],
    ['https://example.com/', 'https://example.com/'],
    ['http://dash.other.org/x', 'http://dash.other.org/x'],
  ])('allows %s', (candidate, expected) => {
    expect(guard.check(candidate, original)).toBe(expected);
  });

  it.each([
    '//evil.com/',
    '/\\evil.com',
    '/\\/evil.com',
    'https://evil.com/',
    'https://example.com.evil.com/',
    'https://evilexample.com/',
    'https://app.example.com@evil.com/',
    'https://user:pw@app.example.com/',
    'javascript:alert(1)',
    'data:text/html,x',
    'https://evil.com%2f@app.example.com/',
    'https://evil.com%2Eapp.example.com/',
    'https://app\u3002example.com/',
    '/ok\r\nSet-Cookie:x=1',
    ' https://app.example.com/',
    'https:/\\evil.com',
    'ftp://app.example.com/',
    '',
  ])('refuses %j', (candidate) => {
    expect(guard.check(candidate, original)).toBeUndefined();
  });

  it('defaults to the request’s own host only', () => {
    expect(ownOnly.check('https://app.example.com/x', original)).toBe('https://app.example.com/x');
    expect(ownOnly.check('https://grafana.example.com/', original)).toBeUndefined();
  });
});
