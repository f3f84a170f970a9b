import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasCaddy, hasNginx, type RunningProxy, startCaddy, startNginx } from '../support/proxies.ts';
import { type RedisServer, startRedis, waitUntil } from '../support/redis.ts';
import { startSentinelSet } from '../support/sentinel.ts';
import { headerValues, type RecordedRequest, startUpstream, type Upstream } from '../support/upstream.ts';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Minimal HTTP client (no redirect following, repeated request headers allowed). */
function httpGet(url: string, headers: Record<string, string | string[]> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A trivial forward-auth service: 200 + X-Auth-User when the client sent `X-Test-Auth: allow`. */
async function startFakeAuth(): Promise<{ url: string; seen: string[]; close(): Promise<void> }> {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(req.url ?? '');
    if (req.headers['x-test-auth'] === 'allow') {
      res.writeHead(200, { 'X-Auth-User': 'alice' }).end();
    } else {
      res.writeHead(401, { 'Content-Type': 'text/plain' }).end('denied');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('redis launcher', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.close();
  });

  it('starts, serves SET/GET, dies on kill() and comes back empty on the same port', async () => {
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    const firstPid = redis.pid();
    expect(firstPid).toBeTypeOf('number');

    const client = new Redis(redis.url, { lazyConnect: true });
    await client.connect();
    await client.set('session:a', 'hello');
    expect(await client.get('session:a')).toBe('hello');
    client.disconnect();
    expect(await redis.get('session:a')).toBe('hello');
    expect(await redis.keys('session:*')).toEqual(['session:a']);
    expect(await redis.dbSize()).toBe(1);

    await redis.kill();
    expect(redis.pid()).toBeUndefined();
    await expect(redis.dbSize()).rejects.toThrow();

    await redis.start();
    expect(redis.pid()).toBeTypeOf('number');
    expect(redis.pid()).not.toBe(firstPid);
    expect(await redis.dbSize()).toBe(0);
    expect(await redis.get('session:a')).toBeNull();

    await redis.flushAll();
    expect(await redis.keys()).toEqual([]);
  });

  it('supports a password', async () => {
    const secured = await startRedis({ password: 's3cret' });
    try {
      expect(secured.url).toBe(`redis://:s3cret@127.0.0.1:${secured.port}`);
      const client = new Redis(secured.url);
      await client.set('k', 'v');
      client.disconnect();
      expect(await secured.get('k')).toBe('v');
    } finally {
      await secured.close();
    }
  });
});

describe('upstream', () => {
  it('echoes raw headers as separate pairs and sets the backend cookie on request', async () => {
    const upstream = await startUpstream();
    try {
      const res = await httpGet(`${upstream.url}/some/path?x=1`, { 'X-Dup': ['a', 'b'], 'X-One': '1' });
      expect(res.status).toBe(200);
      const echo = JSON.parse(res.body) as RecordedRequest;
      expect(echo.method).toBe('GET');
      expect(echo.url).toBe('/some/path?x=1');
      expect(echo.host).toBe(`127.0.0.1:${upstream.port}`);
      expect(echo.headers).toContainEqual(['X-Dup', 'a']);
      expect(echo.headers).toContainEqual(['X-Dup', 'b']);
      expect(headerValues(echo, 'x-dup')).toEqual(['a', 'b']);
      expect(upstream.requests).toEqual([echo]);
      expect(res.headers['set-cookie']).toBeUndefined();

      const withCookie = await httpGet(`${upstream.url}/set-backend-cookie`);
      expect(withCookie.headers['set-cookie']).toEqual(['backend=1; Path=/']);
    } finally {
      await upstream.close();
    }
  });
});

describe.each([
  { name: 'caddy', available: hasCaddy(), start: startCaddy },
  { name: 'nginx', available: hasNginx(), start: startNginx },
])('$name launcher', ({ name, available, start }) => {
  const skipNote = available ? '' : ` [SKIPPED: ${name} binary not installed]`;
  let auth: Awaited<ReturnType<typeof startFakeAuth>> | undefined;
  let upstream: Upstream | undefined;
  let proxy: RunningProxy | undefined;

  beforeAll(async () => {
    if (!available) return;
    auth = await startFakeAuth();
    upstream = await startUpstream();
    proxy = await start({ authUrl: auth.url, upstreamUrl: upstream.url, copyHeaders: ['X-Auth-User'] });
  });
  afterAll(async () => {
    await proxy?.close();
    await upstream?.close();
    await auth?.close();
  });

  it.skipIf(!available)(`proxies allowed requests with copied headers${skipNote}`, async () => {
    const res = await httpGet(`${proxy!.url}/app/page?q=1`, { 'X-Test-Auth': 'allow' });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body) as RecordedRequest;
    expect(echo.url).toBe('/app/page?q=1');
    expect(headerValues(echo, 'X-Auth-User')).toEqual(['alice']);
    // Caddy's forward_auth keeps the client's query string on the auth URI; nginx does not.
    expect(auth!.seen.at(-1)).toBe(name === 'caddy' ? '/auth?q=1' : '/oauth2/auth');
    expect(proxy!.config).toContain('X-Auth-User');
  });

  it.skipIf(!available)(`rejects unauthenticated requests${skipNote}`, async () => {
    const before = upstream!.requests.length;
    const res = await httpGet(`${proxy!.url}/app/page`);
    if (name === 'caddy') {
      expect(res.status).toBe(401);
      expect(res.body).toBe('denied');
    } else {
      // nginx turns the auth 401 into a login redirect via `error_page 401 = @login`.
      expect(res.status).toBe(302);
      expect(res.headers.location).toBe(
        `http://127.0.0.1:${proxy!.port}/oauth2/start?rd=http://127.0.0.1:${proxy!.port}/app/page`,
      );
      const start = await httpGet(`${proxy!.url}/oauth2/start?rd=x`);
      expect(start.status).toBe(401); // reached the auth service unauthenticated
      expect(auth!.seen.at(-1)).toBe('/oauth2/start?rd=x');
    }
    expect(upstream!.requests.length).toBe(before);
  });
});

describe('sentinel launcher', () => {
  it('fails over after killPrimary() and ioredis writes again', async () => {
    const set = await startSentinelSet();
    const client = new Redis({
      sentinels: set.sentinels,
      name: set.masterName,
      sentinelRetryStrategy: () => 100,
      retryStrategy: () => 100,
    });
    client.on('error', () => {});
    try {
      expect(set.sentinels).toHaveLength(3);
      expect(await set.currentPrimaryPort()).toBe(set.primary.port);
      await client.set('before', '1');
      await client.wait(1, 2000); // make sure the replica has it before the primary dies

      await set.killPrimary();
      expect(set.primary.pid()).toBeUndefined();
      const newPort = await set.waitForFailover();
      expect(newPort).toBe(set.replica.port);
      expect(await set.currentPrimaryPort()).toBe(set.replica.port);

      await waitUntil(
        'ioredis to write to the new primary',
        async () => (await client.set('after', '2')) === 'OK',
        {
          timeoutMs: 10_000,
          intervalMs: 100,
        },
      );
      expect(await client.get('before')).toBe('1');
      expect(await set.replica.get('after')).toBe('2');
    } finally {
      client.disconnect();
      await set.close();
    }
  });
});
