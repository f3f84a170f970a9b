import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import type { TestService } from '../support/service.ts';
import { type Stack, startStack } from '../support/stack.ts';

/**
 * The hot path answers from memory for up to 1 s (DESIGN §11 budget). These tests prove that no
 * cache outlives a sign-out (at once on the replica that signed out, within 1 s on the others),
 * a Redis flush combined with a sign-out, or the session's end.
 */
describe('in-process caches never outlive the session', () => {
  let stack: Stack;
  let second: TestService;
  beforeAll(async () => {
    stack = await startStack({ env: { SESSION_TTL: '4s' } });
    second = await stack.startService({ SESSION_TTL: '4s' });
  });
  afterAll(async () => {
    await second?.close();
    await stack?.close();
  });

  const host = () => new URL(stack.appUrl).host;
  const ask = (service: { url: string }, cookie: string) =>
    new Browser().get(`${service.url}/auth`, {
      cookie: `_forward_auth=${cookie}`,
      accept: 'application/json',
      'x-forwarded-host': host(),
      'x-forwarded-uri': '/cached',
    });

  async function session(): Promise<string> {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/c`, DEMO_USERS[0]!);
    return browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
  }

  it('a sign-out on one replica ends the session there at once and on another replica within a second', async () => {
    const cookie = await session();
    expect((await ask(stack.service, cookie)).status).toBe(200);
    expect((await ask(second, cookie)).status).toBe(200); // warms the second replica's cache
    const out = await new Browser().post(
      `${stack.service.url}/oauth2/sign_out`,
      {},
      { cookie: `_forward_auth=${cookie}`, 'x-forwarded-host': host(), origin: stack.appUrl },
    );
    expect(out.status).toBe(200);
    expect((await ask(stack.service, cookie)).status).toBe(401);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await ask(second, cookie)).status).toBe(401);
  });

  it('a cached session is not served past its absolute end (SESSION_TTL)', async () => {
    const before = Date.now();
    const cookie = await session();
    const after = Date.now(); // the session ends between before + 4 s and after + 4 s
    // Keep the cache warm right up to the session's end …
    while (Date.now() < before + 4_000 - 60) {
      await ask(second, cookie);
      await new Promise((r) => setTimeout(r, 40));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, after + 4_000 + 150 - Date.now())));
    // … and just past it the warm entry must not answer.
    expect((await ask(second, cookie)).status).toBe(401);
  });
});
