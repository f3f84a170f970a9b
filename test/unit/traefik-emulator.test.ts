import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';
import {
  type ForwardAuthOptions,
  startTraefik,
  type Traefik,
  type TraefikOptions,
} from '../support/traefik.ts';

// Spec: /work/shared/spec/traefik-forwardauth.md. Section numbers below refer to it.

interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: IncomingHttpHeaders;
  body: string;
}

interface TestServer {
  url: string;
  port: number;
  seen: Seen[];
}

interface Reply {
  status: number;
  rawHeaders: string[];
  body: string;
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A loopback HTTP server that records every request (after reading its body) and then runs `handler`. */
async function startServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<TestServer> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      handler(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${address.port}`, port: address.port, seen };
}

async function startEmulator(opts: TraefikOptions): Promise<Traefik> {
  const traefik = await startTraefik(opts);
  cleanups.push(() => traefik.close());
  return traefik;
}

/** Sends a request with exactly these header lines (duplicates and odd spellings included). */
async function send(
  baseUrl: string,
  path: string,
  options: { method?: string; headers?: [string, string][]; body?: string } = {},
): Promise<Reply> {
  const headers = [['Host', 'app.example.com'], ...(options.headers ?? [])].flat();
  if (options.body !== undefined) headers.push('Content-Length', String(Buffer.byteLength(options.body)));
  // An explicit path, not a URL: WHATWG URL parsing would drop a bare "?" and normalise the path.
  const { hostname, port } = new URL(baseUrl);
  const target = { host: hostname, port, path, method: options.method ?? 'GET', headers, agent: false };
  return await new Promise<Reply>((resolve, reject) => {
    const req = request(target, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks).toString(),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Every value of a header, one entry per header line. */
function values(message: { rawHeaders: string[] }, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < message.rawHeaders.length; i += 2) {
    if (message.rawHeaders[i]?.toLowerCase() === name.toLowerCase())
      out.push(message.rawHeaders[i + 1] ?? '');
  }
  return out;
}

/** Sorted, lower-cased, de-duplicated header names. */
function names(message: { rawHeaders: string[] }): string[] {
  const set = new Set(message.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase()));
  return [...set].sort();
}

function only<T>(items: T[]): T {
  expect(items).toHaveLength(1);
  return items[0] as T;
}

const ok = (_req: IncomingMessage, res: ServerResponse) => res.end('upstream');

/** An auth server answering 200 to everything, an upstream, and an emulator with one forwardAuth route. */
async function authenticatedSetup(
  forwardAuth: Omit<ForwardAuthOptions, 'address'>,
  extra: Partial<TraefikOptions> = {},
) {
  const auth = await startServer((_req, res) => res.end());
  const upstream = await startServer(ok);
  const traefik = await startEmulator({
    routes: [{ forwardAuth: { address: `${auth.url}/verify?rd=1`, ...forwardAuth }, service: upstream.url }],
    ...extra,
  });
  return { auth, upstream, traefik };
}

describe('entry point (§1.1)', () => {
  it('strips client-sent X-Forwarded-* and X-Real-Ip, underscore spellings included, and sets its own', async () => {
    const upstream = await startServer(ok);
    const traefik = await startEmulator({ routes: [{ service: upstream.url }] });

    await send(traefik.url, '/x', {
      headers: [
        ['X-Forwarded-For', '6.6.6.6'],
        ['X_Forwarded_For', '7.7.7.7'],
        ['X-Real-Ip', '1.2.3.4'],
        ['X-Forwarded-Uri', '/admin'],
        ['X-Forwarded-Host', 'evil.example'],
        ['X-Forwarded-Prefix', '/evil'],
      ],
    });

    const seen = only(upstream.seen);
    expect(values(seen, 'X-Forwarded-For')).toEqual(['127.0.0.1']);
    expect(values(seen, 'X-Real-Ip')).toEqual(['127.0.0.1']);
    expect(values(seen, 'X-Forwarded-Host')).toEqual(['app.example.com']);
    expect(values(seen, 'X-Forwarded-Proto')).toEqual(['http']);
    expect(values(seen, 'X-Forwarded-Port')).toEqual(['80']);
    expect(values(seen, 'X-Forwarded-Server')).toEqual(['traefik-emulator']);
    expect(names(seen)).not.toContain('x-forwarded-uri');
    expect(names(seen)).not.toContain('x-forwarded-prefix');
    expect(names(seen)).not.toContain('x_forwarded_for');
    expect(values(seen, 'Host')).toEqual(['app.example.com']);
  });

  it('keeps X-Forwarded-* from a trusted peer and the proxy appends the peer to X-Forwarded-For', async () => {
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [{ service: upstream.url }],
      entryPointTrustedIPs: ['127.0.0.0/8'],
    });

    await send(traefik.url, '/x', {
      headers: [
        ['X-Forwarded-For', '6.6.6.6'],
        ['X-Forwarded-For', '10.0.0.1'],
        ['X-Forwarded-Proto', 'https'],
      ],
    });

    const seen = only(upstream.seen);
    expect(values(seen, 'X-Forwarded-For')).toEqual(['6.6.6.6, 10.0.0.1, 127.0.0.1']);
    expect(values(seen, 'X-Forwarded-Proto')).toEqual(['https']);
    expect(values(seen, 'X-Forwarded-Port')).toEqual(['443']);
  });

  it('drops headers named in Connection but never the managed X-headers', async () => {
    const upstream = await startServer(ok);
    const traefik = await startEmulator({ routes: [{ service: upstream.url }] });

    await send(traefik.url, '/x', {
      headers: [
        ['Connection', 'X-Secret, X-Forwarded-Host'],
        ['X-Secret', 's'],
      ],
    });

    const seen = only(upstream.seen);
    expect(names(seen)).not.toContain('x-secret');
    expect(values(seen, 'X-Forwarded-Host')).toEqual(['app.example.com']);
  });
});

describe('auth request (§3, worked example §3.8)', () => {
  const workedExampleHeaders: [string, string][] = [
    ['User-Agent', 'curl/8'],
    ['Cookie', 'sid=abc'],
    ['X-Forwarded-For', '6.6.6.6'],
    ['X-Forwarded-Uri', '/admin'],
    ['X-Auth-User', 'mallory'],
  ];
  const modeF = [
    'accept-encoding',
    'cookie',
    'host',
    'user-agent',
    'x-auth-user',
    'x-forwarded-for',
    'x-forwarded-host',
    'x-forwarded-method',
    'x-forwarded-port',
    'x-forwarded-proto',
    'x-forwarded-uri',
  ];
  const modeLT = [...modeF, 'x-forwarded-server', 'x-real-ip'].sort();

  it.each([
    ['F', false, modeF],
    ['L', undefined, modeLT],
    ['T', true, modeLT],
  ] as const)(
    'in mode %s the auth server gets exactly the worked-example header set',
    async (_mode, trust, expected) => {
      const { auth, upstream, traefik } = await authenticatedSetup({ trustForwardHeader: trust });

      const reply = await send(traefik.url, '/app/items?id=5', { headers: workedExampleHeaders });

      expect(reply.status).toBe(200);
      expect(upstream.seen).toHaveLength(1);
      const seen = only(auth.seen);
      expect(seen.method).toBe('GET');
      expect(seen.url).toBe('/verify?rd=1');
      expect(names(seen)).toEqual(expected);
      expect(values(seen, 'Host')).toEqual([`127.0.0.1:${auth.port}`]);
      expect(values(seen, 'User-Agent')).toEqual(['curl/8']);
      expect(values(seen, 'Cookie')).toEqual(['sid=abc']);
      expect(values(seen, 'X-Auth-User')).toEqual(['mallory']);
      expect(values(seen, 'Accept-Encoding')).toEqual(['gzip']);
      expect(values(seen, 'X-Forwarded-For')).toEqual(['127.0.0.1']);
      expect(values(seen, 'X-Forwarded-Method')).toEqual(['GET']);
      expect(values(seen, 'X-Forwarded-Proto')).toEqual(['http']);
      expect(values(seen, 'X-Forwarded-Port')).toEqual(['80']);
      expect(values(seen, 'X-Forwarded-Host')).toEqual(['app.example.com']);
      expect(values(seen, 'X-Forwarded-Uri')).toEqual(['/app/items?id=5']);
      if (trust !== false) {
        expect(values(seen, 'X-Real-Ip')).toEqual(['127.0.0.1']);
        expect(values(seen, 'X-Forwarded-Server')).toEqual(['traefik-emulator']);
      }
    },
  );

  it('with authRequestHeaders [Cookie], mode L sends only Cookie plus the computed headers and Go’s User-Agent', async () => {
    const { auth, traefik } = await authenticatedSetup({ authRequestHeaders: ['Cookie'] });

    await send(traefik.url, '/app/items?id=5', { headers: workedExampleHeaders });

    const seen = only(auth.seen);
    expect(names(seen)).toEqual([
      'accept-encoding',
      'cookie',
      'host',
      'user-agent',
      'x-forwarded-for',
      'x-forwarded-host',
      'x-forwarded-method',
      'x-forwarded-proto',
      'x-forwarded-uri',
    ]);
    expect(values(seen, 'User-Agent')).toEqual(['Go-http-client/1.1']);
  });

  it('with authRequestHeaders [Cookie], mode T keeps the managed X-headers', async () => {
    const { auth, traefik } = await authenticatedSetup({
      authRequestHeaders: ['cookie'],
      trustForwardHeader: true,
    });

    await send(traefik.url, '/app/items?id=5', { headers: workedExampleHeaders });

    const seen = only(auth.seen);
    expect(names(seen)).toEqual([
      'accept-encoding',
      'cookie',
      'host',
      'user-agent',
      'x-forwarded-for',
      'x-forwarded-host',
      'x-forwarded-method',
      'x-forwarded-port',
      'x-forwarded-proto',
      'x-forwarded-server',
      'x-forwarded-uri',
      'x-real-ip',
    ]);
    expect(values(seen, 'User-Agent')).toEqual(['Go-http-client/1.1']);
  });

  it.each([
    ['v3', undefined, ['Go-http-client/1.1']],
    ['v3', false, []],
    ['v3', true, []],
    ['v2', false, ['Go-http-client/1.1']],
  ] as const)(
    'in the %s profile with trustForwardHeader %s a request without User-Agent reaches auth with %j',
    async (profile, trust, expected) => {
      const { auth, traefik } = await authenticatedSetup({ trustForwardHeader: trust }, { profile });

      await send(traefik.url, '/');

      expect(values(only(auth.seen), 'User-Agent')).toEqual(expected);
    },
  );

  it('copies every value of a repeated header and drops hop-by-hop headers but keeps Proxy-Authorization', async () => {
    const { auth, upstream, traefik } = await authenticatedSetup({});

    await send(traefik.url, '/', {
      headers: [
        ['X-Multi', 'one'],
        ['X-Multi', 'two'],
        ['Proxy-Authorization', 'Basic abc'],
        ['Keep-Alive', 'timeout=5'],
        ['Te', 'trailers'],
      ],
    });

    const seen = only(auth.seen);
    expect(values(seen, 'X-Multi')).toEqual(['one', 'two']);
    expect(values(seen, 'Proxy-Authorization')).toEqual(['Basic abc']);
    expect(names(seen)).not.toContain('keep-alive');
    expect(names(seen)).not.toContain('te');
    expect(names(seen)).not.toContain('connection');
    // The reverse proxy, unlike ForwardAuth, drops Proxy-Authorization.
    expect(names(only(upstream.seen))).not.toContain('proxy-authorization');
  });

  it.each([
    ['/p%41/x?q=a%20b', '/pA/x?q=a%20b'], // unreserved %41 decoded by the entry point's normalizePath (§1.2)
    ['/p%2f/x', '/p%2F/x'], // other escapes kept, hex upper-cased
    ['/foo?', '/foo?'], // a bare "?" is kept (§3.4)
    ['/x?y=%zz', '/x?y=%zz'], // the query is never re-encoded
    ['/a/../b//c', '/b/c'], // sanitizePath collapses dot segments and "//"
  ])(
    'a request for %s gives X-Forwarded-Uri %s, which is also the path the upstream gets',
    async (path, expected) => {
      const { auth, upstream, traefik } = await authenticatedSetup({});

      await send(traefik.url, path);

      expect(values(only(auth.seen), 'X-Forwarded-Uri')).toEqual([expected]);
      expect(only(upstream.seen).url).toBe(expected);
    },
  );

  it('behind stripPrefix, X-Forwarded-Uri holds the stripped path and X-Forwarded-Prefix the prefix', async () => {
    const auth = await startServer((_req, res) => res.end());
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [
        {
          pathPrefix: '/api',
          stripPrefix: '/api',
          forwardAuth: { address: `${auth.url}/verify` },
          service: upstream.url,
        },
      ],
    });

    await send(traefik.url, '/api/items?x=1');

    const seen = only(auth.seen);
    expect(values(seen, 'X-Forwarded-Uri')).toEqual(['/items?x=1']);
    expect(values(seen, 'X-Forwarded-Prefix')).toEqual(['/api']);
    expect(only(upstream.seen).url).toBe('/items?x=1');
    expect(values(only(upstream.seen), 'X-Forwarded-Prefix')).toEqual(['/api']);
  });

  it('sends GET without a body by default, and the original method with preserveRequestMethod', async () => {
    const plain = await authenticatedSetup({});
    await send(plain.traefik.url, '/submit', { method: 'POST', body: 'hello' });
    const plainAuth = only(plain.auth.seen);
    expect(plainAuth.method).toBe('GET');
    expect(names(plainAuth)).not.toContain('content-length');
    expect(values(plainAuth, 'X-Forwarded-Method')).toEqual(['POST']);
    expect(only(plain.upstream.seen)).toMatchObject({ method: 'POST', body: 'hello' });

    const preserving = await authenticatedSetup({ preserveRequestMethod: true });
    await send(preserving.traefik.url, '/submit', { method: 'POST', body: 'hello' });
    const preservingAuth = only(preserving.auth.seen);
    expect(preservingAuth.method).toBe('POST');
    expect(values(preservingAuth, 'Content-Length')).toEqual(['0']);
    expect(preservingAuth.body).toBe('');
    expect(only(preserving.upstream.seen)).toMatchObject({ method: 'POST', body: 'hello' });
  });

  it('round-robins over several addresses and counts every auth call', async () => {
    const first = await startServer((_req, res) => res.end());
    const second = await startServer((_req, res) => res.end());
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [{ forwardAuth: { address: [`${first.url}/a`, `${second.url}/b`] }, service: upstream.url }],
    });

    for (let i = 0; i < 4; i++) expect((await send(traefik.url, '/')).status).toBe(200);

    expect(first.seen.map((s) => s.url)).toEqual(['/a', '/a']);
    expect(second.seen.map((s) => s.url)).toEqual(['/b', '/b']);
    expect(traefik.authCalls).toBe(4);
  });
});

describe('auth response (§4)', () => {
  it('answers 500 with an empty body when the auth server is unreachable', async () => {
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [
        { forwardAuth: { address: `http://127.0.0.1:${await freePort()}/verify` }, service: upstream.url },
      ],
    });

    const reply = await send(traefik.url, '/');

    expect(reply.status).toBe(500);
    expect(reply.body).toBe('');
    expect(values(reply, 'Content-Length')).toEqual(['0']);
    expect(names(reply)).not.toContain('content-type');
    expect(upstream.seen).toHaveLength(0);
    expect(traefik.authCalls).toBe(1);
  });

  it('relays a 302 with a relative Location made absolute against the address, and every Set-Cookie verbatim', async () => {
    const auth = await startServer((_req, res) => {
      res.statusCode = 302;
      res.setHeader('Location', '/login?x=1');
      res.setHeader('Set-Cookie', [
        'csrf=abc; Path=/; HttpOnly',
        'state=xyz; path=/oauth2; samesite=lax; foo',
      ]);
      res.end('redirecting');
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [{ forwardAuth: { address: `${auth.url}/verify?rd=1` }, service: upstream.url }],
    });

    const reply = await send(traefik.url, '/app');

    expect(reply.status).toBe(302);
    expect(values(reply, 'Location')).toEqual([`${auth.url}/login?x=1`]);
    expect(values(reply, 'Set-Cookie')).toEqual([
      'csrf=abc; Path=/; HttpOnly',
      'state=xyz; path=/oauth2; samesite=lax; foo',
    ]);
    expect(reply.body).toBe('redirecting');
    expect(upstream.seen).toHaveLength(0);
  });

  it('resolves a path-relative Location against the address path', async () => {
    const auth = await startServer((_req, res) => {
      res.writeHead(302, { Location: 'login' }).end();
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [{ forwardAuth: { address: `${auth.url}/auth/verify?rd=1` }, service: upstream.url }],
    });

    const reply = await send(traefik.url, '/');

    expect(values(reply, 'Location')).toEqual([`${auth.url}/auth/login`]);
  });

  it('keeps a relative Location as sent with preserveLocationHeader', async () => {
    const auth = await startServer((_req, res) => {
      res.writeHead(302, { Location: '/oauth2/start?rd=%2Fapp' }).end();
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [
        {
          forwardAuth: { address: `${auth.url}/verify`, preserveLocationHeader: true },
          service: upstream.url,
        },
      ],
    });

    const reply = await send(traefik.url, '/');

    expect(reply.status).toBe(302);
    expect(values(reply, 'Location')).toEqual(['/oauth2/start?rd=%2Fapp']);
  });

  it('relays a 401 with its body and headers, gunzipping a body it asked to be gzipped', async () => {
    const auth = await startServer((req, res) => {
      expect(req.headers['accept-encoding']).toBe('gzip');
      res.writeHead(401, {
        'Content-Encoding': 'gzip',
        'Content-Type': 'text/plain',
        'WWW-Authenticate': 'Bearer realm="x"',
        'Proxy-Authenticate': 'Basic',
      });
      res.end(gzipSync('denied'));
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [{ forwardAuth: { address: `${auth.url}/verify` }, service: upstream.url }],
    });

    const reply = await send(traefik.url, '/');

    expect(reply.status).toBe(401);
    expect(reply.body).toBe('denied');
    expect(names(reply)).not.toContain('content-encoding');
    expect(values(reply, 'Www-Authenticate')).toEqual(['Bearer realm="x"']);
    expect(values(reply, 'Proxy-Authenticate')).toEqual(['Basic']);
    expect(values(reply, 'Content-Type')).toEqual(['text/plain']);
  });

  it('answers 500 with an empty body when the auth server does not answer within the timeout', async () => {
    const auth = await startServer(() => {}); // never answers
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [{ forwardAuth: { address: `${auth.url}/verify` }, service: upstream.url }],
      authTimeoutMs: 200,
    });

    const reply = await send(traefik.url, '/');

    expect(reply.status).toBe(500);
    expect(reply.body).toBe('');
    expect(upstream.seen).toHaveLength(0);
  });

  it('answers 500 when a non-2xx Location cannot be parsed', async () => {
    const auth = await startServer((_req, res) => {
      res.writeHead(302, { Location: '/bad%zz', 'X-Leak': 'yes' }).end();
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [{ forwardAuth: { address: `${auth.url}/verify` }, service: upstream.url }],
    });

    const reply = await send(traefik.url, '/');

    expect(reply.status).toBe(500);
    expect(values(reply, 'X-Leak')).toEqual(['yes']);
  });

  it('turns a 401 into a 302 to authSigninURL, resolved against the request path, without copying auth headers', async () => {
    const auth = await startServer((_req, res) => {
      res.writeHead(401, { 'Set-Cookie': 'a=b', 'WWW-Authenticate': 'Basic' }).end('nope');
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [
        { forwardAuth: { address: `${auth.url}/verify`, authSigninURL: 'login' }, service: upstream.url },
      ],
    });

    const reply = await send(traefik.url, '/app/page');

    expect(reply.status).toBe(302);
    expect(values(reply, 'Location')).toEqual(['/app/login']);
    expect(values(reply, 'Content-Type')).toEqual(['text/html; charset=utf-8']);
    expect(reply.body).toBe('<a href="/app/login">Found</a>.\n\n');
    expect(names(reply)).not.toContain('set-cookie');
    expect(names(reply)).not.toContain('www-authenticate');
  });

  it('answers 401 with an empty body when the auth body exceeds maxResponseBodySize, even for 2xx', async () => {
    const auth = await startServer((req, res) =>
      res.end(req.url === '/big' ? 'x'.repeat(11) : 'x'.repeat(10)),
    );
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [
        {
          pathPrefix: '/big',
          forwardAuth: { address: `${auth.url}/big`, maxResponseBodySize: 10 },
          service: upstream.url,
        },
        { forwardAuth: { address: `${auth.url}/fits`, maxResponseBodySize: 10 }, service: upstream.url },
      ],
    });

    const tooBig = await send(traefik.url, '/big');
    expect(tooBig.status).toBe(401);
    expect(tooBig.body).toBe('');
    expect(upstream.seen).toHaveLength(0);

    expect((await send(traefik.url, '/fits')).status).toBe(200);
    expect(upstream.seen).toHaveLength(1);
  });
});

describe('2xx: changing the upstream request (§4.3)', () => {
  it('strips a client-sent listed header even when the auth server omits it, and copies multi-values as separate lines', async () => {
    const auth = await startServer((_req, res) => {
      res.setHeader('X-Auth-Request-Groups', ['admins', 'ops']);
      res.setHeader('X-Secret', 'not-listed');
      res.end();
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [
        {
          forwardAuth: {
            address: `${auth.url}/verify`,
            authResponseHeaders: ['X-Auth-Request-User', 'x-auth-request-groups'],
          },
          service: upstream.url,
        },
      ],
    });

    await send(traefik.url, '/', {
      headers: [
        ['X-Auth-Request-User', 'mallory'],
        ['X-Auth-Request-Groups', 'root'],
        ['X-Unlisted', 'kept'],
      ],
    });

    const seen = only(upstream.seen);
    expect(names(seen)).not.toContain('x-auth-request-user');
    expect(values(seen, 'X-Auth-Request-Groups')).toEqual(['admins', 'ops']);
    expect(names(seen)).not.toContain('x-secret');
    expect(values(seen, 'X-Unlisted')).toEqual(['kept']);
  });

  it('applies authResponseHeadersRegex case-sensitively to Go-canonical names', async () => {
    const auth = await startServer((_req, res) => {
      res.setHeader('x-auth-user', 'alice');
      res.setHeader('X-AUTH-EMAIL', 'alice@example.com');
      res.setHeader('X-Other', 'no');
      res.end();
    });
    const upstream = await startServer(ok);
    const traefik = await startEmulator({
      routes: [
        {
          pathPrefix: '/lower',
          forwardAuth: { address: auth.url, authResponseHeadersRegex: '^x-auth-' },
          service: upstream.url,
        },
        { forwardAuth: { address: auth.url, authResponseHeadersRegex: '^X-Auth-' }, service: upstream.url },
      ],
    });

    await send(traefik.url, '/', { headers: [['x-auth-spoof', 'mallory']] });
    const seen = only(upstream.seen);
    expect(values(seen, 'X-Auth-User')).toEqual(['alice']);
    expect(values(seen, 'X-Auth-Email')).toEqual(['alice@example.com']);
    expect(names(seen)).not.toContain('x-auth-spoof');
    expect(names(seen)).not.toContain('x-other');

    await send(traefik.url, '/lower', { headers: [['x-auth-spoof', 'mallory']] });
    const lower = upstream.seen[1];
    expect(lower && values(lower, 'X-Auth-Spoof')).toEqual(['mallory']);
    expect(lower && names(lower)).not.toContain('x-auth-user');
  });
});

describe('2xx: addAuthCookiesToResponse (§4.4)', () => {
  it('keeps backend cookies first, replaces a same-named backend cookie with the listed auth cookie, and re-serialises Go-style', async () => {
    const auth = await startServer((_req, res) => {
      res.setHeader('Set-Cookie', ['authCookie=Auth; Path=/; HttpOnly', 'unlisted=1']);
      res.end();
    });
    const upstream = await startServer((_req, res) => {
      res.setHeader('Set-Cookie', [
        'backendCookie=Backend; path=/; domain=.example.com; samesite=lax; foo=bar',
        'authCookie=Backend',
        'not a cookie',
      ]);
      res.end('page');
    });
    const traefik = await startEmulator({
      routes: [
        {
          forwardAuth: { address: `${auth.url}/verify`, addAuthCookiesToResponse: ['authCookie'] },
          service: upstream.url,
        },
      ],
    });

    const reply = await send(traefik.url, '/');

    expect(reply.status).toBe(200);
    expect(reply.body).toBe('page');
    expect(values(reply, 'Set-Cookie')).toEqual([
      'backendCookie=Backend; Path=/; Domain=example.com; SameSite=Lax',
      'authCookie=Auth; Path=/; HttpOnly',
    ]);
  });

  it.each([
    ['sets no cookie', [], ['b=1; path=/; foo=bar']],
    ['sets an unlisted cookie', ['other=1'], ['b=1; Path=/']],
  ])('when the 2xx auth reply %s, backend cookies are %j', async (_case, authCookies, expected) => {
    const auth = await startServer((_req, res) => {
      if (authCookies.length > 0) res.setHeader('Set-Cookie', authCookies);
      res.end();
    });
    const upstream = await startServer((_req, res) => {
      res.setHeader('Set-Cookie', ['b=1; path=/; foo=bar']);
      res.end();
    });
    const traefik = await startEmulator({
      routes: [{ forwardAuth: { address: auth.url }, service: upstream.url }],
    });

    expect(values(await send(traefik.url, '/'), 'Set-Cookie')).toEqual(expected);
  });
});

describe('routing and proxying', () => {
  it('answers 404 when no route matches and 502 when the upstream is unreachable', async () => {
    const traefik = await startEmulator({
      routes: [
        { host: 'other.example.com', service: 'http://127.0.0.1:1' },
        { pathPrefix: '/down', service: `http://127.0.0.1:${await freePort()}` },
      ],
    });

    const notFound = await send(traefik.url, '/nothing');
    expect(notFound.status).toBe(404);
    expect(notFound.body).toBe('404 page not found\n');

    const badGateway = await send(traefik.url, '/down');
    expect(badGateway.status).toBe(502);
    expect(badGateway.body).toBe('Bad Gateway');
  });

  it('refuses v3-only forwardAuth options in the v2 profile', async () => {
    await expect(
      startTraefik({
        profile: 'v2',
        routes: [
          {
            forwardAuth: { address: 'http://127.0.0.1:1', addAuthCookiesToResponse: ['a'] },
            service: 'http://127.0.0.1:1',
          },
        ],
      }),
    ).rejects.toThrow(/v2 profile/);
  });
});
