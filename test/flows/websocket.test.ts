import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { hasCaddy, hasNginx, startShippedProxy } from '../support/proxies.ts';
import type { GatewayOptions } from '../support/stack/gateway.ts';
import type { Stack } from '../support/stack.ts';
import { startStack } from '../support/stack.ts';
import { headerValues, WEBSOCKET_GREETING } from '../support/upstream.ts';

/**
 * WebSocket upgrades (issue 16 item 5: Dashboard and Headlamp exec and logs) through the Traefik
 * emulator and the shipped nginx and Caddy configurations, to a real WebSocket upstream, with
 * Node's own WebSocket client: decided like API calls — no session 401 (never a login), allowed
 * 101 with the ID token upstream, denied 403 — and no upgrade unless allowed. The proxies listen
 * on 127.0.0.1 (Node's WebSocket client sends the URL's host and cannot resolve *.localhost).
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const POLICY = 'default: allow\nrules:\n  - path: /closed\n    allow: { groups: [nobody] }\n';

const CASES: { name: string; available: boolean; gateway: GatewayOptions; env: Record<string, string> }[] = [
  { name: 'the Traefik emulator', available: true, gateway: { hosts: ['127.0.0.1'] }, env: {} },
  {
    name: 'the shipped nginx configuration',
    available: hasNginx(),
    gateway: { hosts: ['127.0.0.1'], proxy: (at) => startShippedProxy('nginx', at) },
    env: { AUTH_PORT: '0' },
  },
  {
    name: 'the shipped Caddy configuration',
    available: hasCaddy(),
    gateway: { hosts: ['127.0.0.1'], proxy: (at) => startShippedProxy('caddy', at) },
    env: { AUTH_PORT: '0' },
  },
];

/** A handshake by hand, to see the status of a refused one (the WebSocket API does not say). */
function handshake(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; upgraded: boolean }> {
  return new Promise((resolve, reject) => {
    const out = request(url, {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
        ...headers,
      },
    });
    out.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve({ status: 101, upgraded: true });
    });
    out.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, upgraded: false });
    });
    out.on('error', reject);
    out.end();
  });
}

/** Node's WebSocket client: the first message, or why it never opened. */
function firstMessage(url: string, cookie: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers: { Cookie: cookie } } as unknown as string[]);
    socket.onmessage = (event) => {
      resolve(String(event.data));
      socket.close();
    };
    socket.onerror = () => reject(new Error('the WebSocket did not open'));
  });
}

describe.each(CASES)('WebSocket upgrades through $name', (c) => {
  let stack: Stack;
  let dir: string;
  let cookie: string;

  beforeAll(async () => {
    if (!c.available) return;
    dir = mkdtempSync(join(tmpdir(), 'ws-flow-'));
    writeFileSync(join(dir, 'authz.yaml'), POLICY);
    stack = await startStack({
      gateway: c.gateway,
      env: { ...c.env, AUTHZ_CONFIG: join(dir, 'authz.yaml') },
    });
    const browser = new Browser({ navigation: true });
    const login = await loginThroughDex(browser, `${stack.appUrl}/board`, admin);
    expect(login.final.status).toBe(200);
    cookie = `_forward_auth=${browser.cookies(stack.appUrl).find((k) => k.name === '_forward_auth')!.value}`;
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const wsUrl = (path: string) => `${stack.appUrl.replace(/^http/, 'ws')}${path}`;
  const upgradesTo = (path: string) =>
    stack.upstream.requests.filter((r) => r.url === path && headerValues(r, 'upgrade').length > 0);

  it.skipIf(!c.available)(
    'lets a signed-in browser’s WebSocket through, with its ID token upstream',
    async () => {
      expect(await firstMessage(wsUrl('/api/v1/exec?container=app'), cookie)).toBe(WEBSOCKET_GREETING);
      const [seen] = upgradesTo('/api/v1/exec?container=app');
      expect(headerValues(seen!, 'upgrade')[0]?.toLowerCase()).toBe('websocket');
      const token = headerValues(seen!, 'authorization')[0];
      expect(token).toMatch(/^Bearer eyJ/);
      const page = stack.upstream.requests.find((r) => r.url === '/board')!;
      expect(token).toBe(headerValues(page, 'authorization')[0]);
    },
  );

  it.skipIf(!c.available)(
    'answers a WebSocket without a session 401, never a login, and upgrades nothing',
    async () => {
      // Even with the Accept header of a page: a handshake is no navigation.
      expect(
        await handshake(`${stack.appUrl}/api/v1/logs`, { Accept: 'text/html,application/xhtml+xml' }),
      ).toEqual({
        status: 401,
        upgraded: false,
      });
      expect(await handshake(`${stack.appUrl}/api/v1/logs`, { Cookie: '_forward_auth=forged' })).toEqual({
        status: 401,
        upgraded: false,
      });
      expect(upgradesTo('/api/v1/logs')).toEqual([]);
    },
  );

  it.skipIf(!c.available)(
    'refuses a signed-in user’s WebSocket the policy denies with 403, and upgrades nothing',
    async () => {
      expect(await handshake(`${stack.appUrl}/closed/stream`, { Cookie: cookie })).toEqual({
        status: 403,
        upgraded: false,
      });
      expect(upgradesTo('/closed/stream')).toEqual([]);
    },
  );
});
