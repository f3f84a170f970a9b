import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { createOidcProvider, RefreshError } from '../../src/oidc/provider.ts';
import { Turns } from '../../src/oidc/turns.ts';
import { TEST_COOKIE_SECRET } from '../support/service.ts';

/** Settles the microtasks and timers queued so far. */
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('Turns', () => {
  it('runs at most `limit` calls at once, the rest first come first served, and frees a slot on failure', async () => {
    const turns = new Turns(2);
    const started: number[] = [];
    const release: (() => void)[] = [];
    const call = (i: number, fail = false) =>
      turns.run(
        () =>
          new Promise<number>((resolve, reject) => {
            started.push(i);
            release[i] = () => (fail ? reject(new Error(`call ${i}`)) : resolve(i));
          }),
      );
    const results = [call(0, true), call(1), call(2), call(3)].map((p) => p.catch((e: Error) => e.message));
    await tick();
    expect(started).toEqual([0, 1]);
    expect(turns.load).toEqual({ running: 2, waiting: 2 });
    release[0]?.(); // a failure gives its slot to the next in line
    await tick();
    expect(started).toEqual([0, 1, 2]);
    release[2]?.();
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    release[1]?.();
    release[3]?.();
    expect(await Promise.all(results)).toEqual(['call 0', 1, 2, 3]);
    expect(turns.load).toEqual({ running: 0, waiting: 0 });
  });
});

/**
 * A provider whose token endpoint answers after `delayMs`, counting the calls in flight; every
 * refresh is refused (invalid_grant), so nothing but the call itself is needed.
 */
async function slowProvider(delayMs: number) {
  const seen = { inFlight: 0, most: 0, calls: 0 };
  const server: Server = createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url === '/.well-known/openid-configuration') {
      res.setHeader('Content-Type', 'application/json');
      res.end(
        JSON.stringify({
          issuer: base,
          authorization_endpoint: `${base}/auth`,
          token_endpoint: `${base}/token`,
          jwks_uri: `${base}/keys`,
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
        }),
      );
      return;
    }
    if (req.url === '/token') {
      seen.calls++;
      seen.inFlight++;
      seen.most = Math.max(seen.most, seen.inFlight);
      req.resume();
      setTimeout(() => {
        seen.inFlight--;
        res.statusCode = 400;
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ error: 'invalid_grant' }));
      }, delayMs);
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, seen, issuer: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** Our provider client for `issuer`, closed after the test. */
function clientOf(issuer: string, options: { timeoutMs: number; maxConcurrentTokenCalls: number }) {
  const oidc = createOidcProvider({
    config: loadConfig({
      OIDC_ISSUER_URL: issuer,
      OIDC_ALLOW_INSECURE_HTTP: 'true',
      OIDC_CLIENT_ID: 'storm',
      OIDC_CLIENT_SECRET: 'storm-secret-0123456789',
      COOKIE_SECRET: TEST_COOKIE_SECRET,
    }),
    clock: systemClock,
    log: silentLogger(),
    ...options,
  });
  closers.push(() => oidc.close());
  return oidc;
}

describe('the provider’s token endpoint under a refresh storm', () => {
  it('gets at most maxConcurrentTokenCalls grants at once per replica; waiting does not count against the call timeout', async () => {
    const provider = await slowProvider(120);
    closers.push(() => provider.server.close());
    // Each call takes 120 ms, all eight together 480 ms: far beyond the timeout, had they been
    // timed from their request rather than from their turn.
    const oidc = clientOf(provider.issuer, { timeoutMs: 400, maxConcurrentTokenCalls: 2 });
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        oidc.refresh(`rt-${i}`).then(
          () => 'granted',
          (error: unknown) => (error instanceof RefreshError ? error.kind : 'other'),
        ),
      ),
    );
    expect(provider.seen.calls).toBe(8);
    expect(provider.seen.most).toBe(2);
    // Every call got the provider's own answer (a refusal), none timed out (transient).
    expect(outcomes).toEqual(Array.from({ length: 8 }, () => 'terminal'));
  });
});

describe('Turns against a provider that hangs', () => {
  it('gives up a wait longer than maxWaitMs with the caller’s error, and keeps its count of slots right', async () => {
    const turns = new Turns(1);
    let release: () => void = () => undefined;
    const first = turns.run(() => new Promise<string>((resolve) => (release = () => resolve('first'))));
    const second = turns.run(
      async () => 'second',
      50,
      () => new RefreshError('transient', 'no turn'),
    );
    await expect(second).rejects.toMatchObject({ kind: 'transient', message: 'no turn' });
    expect(turns.load).toEqual({ running: 1, waiting: 0 });
    release();
    expect(await first).toBe('first');
    expect(turns.load).toEqual({ running: 0, waiting: 0 });
    expect(await turns.run(async () => 'third')).toBe('third');
  });
});

describe('an impatient refresh (its session can go on with the current token)', () => {
  it('waits at most the call timeout for its turn, then fails as a timed-out call does; a patient one waits', async () => {
    const provider = await slowProvider(300);
    closers.push(() => provider.server.close());
    const oidc = clientOf(provider.issuer, { timeoutMs: 500, maxConcurrentTokenCalls: 1 });
    const kindOf = (p: Promise<unknown>) =>
      p.then(
        () => 'granted',
        (error: unknown) => (error instanceof RefreshError ? `${error.kind}: ${error.message}` : 'other'),
      );
    // One turn, 300 ms a call: the second waits 300 ms, the fourth 900 ms (beyond the 500 ms timeout).
    const first = kindOf(oidc.refresh('rt-1', { impatient: true }));
    const second = kindOf(oidc.refresh('rt-2', { impatient: true }));
    const patient = kindOf(oidc.refresh('rt-3'));
    const fourth = kindOf(oidc.refresh('rt-4', { impatient: true }));
    expect(await first).toMatch(/^terminal/);
    expect(await second).toMatch(/^terminal/);
    expect(await fourth).toMatch(/^transient: the provider is busy/);
    expect(await patient).toMatch(/^terminal/); // waited 600 ms for its turn, then got its answer
    expect(provider.seen.calls).toBe(3);
  });
});
