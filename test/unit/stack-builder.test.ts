import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Browser } from '../support/browser.ts';
import { freePort } from '../support/ports.ts';
import { tcpAccepts } from '../support/redis.ts';
import { startStack } from '../support/stack.ts';

/** The stack builder that flows, e2e, the demo and the bench share (test/support/stack.ts). */
describe('the stack builder', () => {
  it('closes what it had started when a part cannot start (here: the gateway port is taken)', async () => {
    const taken = createServer();
    const gatewayPort = await freePort();
    await new Promise<void>((resolve) => taken.listen(gatewayPort, '127.0.0.1', resolve));
    const dexPort = await freePort();
    try {
      await expect(
        startStack({ redis: false, dex: { port: dexPort }, gateway: { port: gatewayPort } }),
      ).rejects.toThrow(/EADDRINUSE/);
      // The stand-in had started (the replica needs its issuer) and is gone again.
      expect(await tcpAccepts(dexPort)).toBe(false);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('serves the decisions, the given hosts and the direct routes through the emulator', async () => {
    const stack = await startStack({
      redis: false,
      replicas: { count: 2 },
      gateway: {
        hosts: ['dash.localhost'],
        routes: (pages) => [{ pathPrefix: '/healthz', service: pages }],
      },
    });
    try {
      const get = (host: string, path: string) =>
        new Browser().get(`http://${host}:${stack.port}${path}`, { accept: 'application/json' });
      expect((await get('dash.localhost', '/x')).status).toBe(401);
      expect((await get('other.localhost', '/x')).status).toBe(404);
      expect((await get('other.localhost', '/healthz')).status).toBe(200);
      expect(stack.services).toHaveLength(2);
      expect(stack.appUrl).toBe(`http://dash.localhost:${stack.port}`);
    } finally {
      await stack.close();
    }
  });
});
