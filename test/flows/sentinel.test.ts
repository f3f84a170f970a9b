import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import type { SentinelSet } from '../support/sentinel.ts';
import { type Stack, startStack } from '../support/stack.ts';

/**
 * Redis Sentinel through ioredis: 1 primary, 1 replica, 3 sentinels (real `redis-server
 * --sentinel` processes). Killing the primary under load logs nobody out; after the failover,
 * sessions are stored on the new primary.
 */
describe('Redis Sentinel', () => {
  let sentinel: SentinelSet;
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redis: 'sentinel' });
    sentinel = stack.sentinel as SentinelSet;
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('sessions live on the primary found through the sentinels and survive a failover', async () => {
    const browser = new Browser({ navigation: true });
    const result = await loginThroughDex(browser, `${stack.appUrl}/sentinel`, DEMO_USERS[0]!);
    expect(result.final.status).toBe(200);
    expect((await sentinel.primary.keys('dfa:s:*')).length).toBeGreaterThan(0);

    const statuses: number[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        statuses.push(
          (await browser.get(`${stack.appUrl}/sentinel/${i}`, { accept: 'application/json' })).status,
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await sentinel.killPrimary();
    const newPort = await sentinel.waitForFailover();
    expect(newPort).toBe(sentinel.replica.port);
    // Keep browsing a little after the failover, then check the new primary is written to.
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await load;
    expect(statuses.length).toBeGreaterThan(10);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);

    const other = new Browser({ navigation: true });
    expect(
      (await loginThroughDex(other, `${stack.appUrl}/after-failover`, DEMO_USERS[1]!)).final.status,
    ).toBe(200);
    expect((await sentinel.replica.keys('dfa:s:*')).length).toBeGreaterThan(0);
  });
});
