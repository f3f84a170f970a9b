import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { AppError, describeError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { classifyRefreshError, createOidcProvider, type OidcProvider } from '../../src/oidc/provider.ts';
import { freePort } from '../support/ports.ts';
import { LogCapture, TEST_COOKIE_SECRET } from '../support/service.ts';

/** A failed provider call is logged with its real cause (ECONNREFUSED host:port), not "fetch failed". */

let provider: OidcProvider | undefined;
afterEach(() => provider?.close());

describe('a provider that cannot be reached', () => {
  it('logs the cause under a failed discovery and puts it in the 503 detail', async () => {
    const port = await freePort();
    const config = loadConfig({
      OIDC_ISSUER_URL: `http://127.0.0.1:${port}/dex`,
      OIDC_ALLOW_INSECURE_HTTP: 'true',
      OIDC_CLIENT_ID: 'fwd',
      OIDC_CLIENT_SECRET: 'client-secret-value',
      COOKIE_SECRET: TEST_COOKIE_SECRET,
    });
    const logs = new LogCapture();
    provider = createOidcProvider({
      config,
      clock: systemClock,
      log: createLogger({ level: 'warn', destination: logs }),
    });
    const attempt = provider.authorizationUrl({
      redirectUri: 'http://app.localhost/oauth2/callback',
      state: 's',
      nonce: 'n',
      codeVerifier: 'v'.repeat(43),
    });
    const error = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).detail).toContain(`ECONNREFUSED 127.0.0.1:${port}`);
    const failure = logs.records().find((r) => r['msg'] === 'oidc discovery failed; will retry');
    expect(failure?.['err']).toMatchObject({
      message: `fetch failed: connect ECONNREFUSED 127.0.0.1:${port}`,
    });
  });

  it('names the cause of a refresh that could not reach the token endpoint', async () => {
    const port = await freePort();
    const error = await fetch(`http://127.0.0.1:${port}/token`).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(classifyRefreshError(error).message).toBe(
      `token endpoint unreachable: fetch failed: connect ECONNREFUSED 127.0.0.1:${port}`,
    );
  });
});

describe('describeError', () => {
  it('follows the cause chain and lists each error of an AggregateError', () => {
    const refused = (address: string) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}`), { code: 'ECONNREFUSED' });
    const both = new AggregateError([refused('::1:5556'), refused('127.0.0.1:5556')], '');
    expect(describeError(new TypeError('fetch failed', { cause: both }))).toBe(
      'fetch failed: connect ECONNREFUSED ::1:5556, connect ECONNREFUSED 127.0.0.1:5556',
    );
    expect(describeError('plain')).toBe('plain');
  });
});
