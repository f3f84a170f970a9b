import { createServer, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { AppError, describeError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { translateRefreshedTokenError } from '../../src/oidc/errors.ts';
import {
  boundedResponse,
  CLAIM_MAX_BYTES,
  checkClaimSizes,
  checkIdTokenSize,
  ID_TOKEN_MAX_BYTES,
  PROVIDER_RESPONSE_MAX_BYTES,
  TokenTooLarge,
} from '../../src/oidc/limits.ts';
import {
  classifyRefreshError,
  createOidcProvider,
  type OidcProvider,
  RefreshError,
} from '../../src/oidc/provider.ts';
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

/** A provider that answers the token endpoint however the test says. */
async function fakeTokenEndpoint(answer: (res: ServerResponse) => void) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/.well-known/openid-configuration')) {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          issuer: base,
          authorization_endpoint: `${base}/authorize`,
          token_endpoint: `${base}/oauth/token`,
          jwks_uri: `${base}/certs`,
        }),
      );
      return;
    }
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const config = loadConfig({
    OIDC_ISSUER_URL: base,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    OIDC_CLIENT_ID: 'fwd',
    OIDC_CLIENT_SECRET: 'client-secret-value',
    COOKIE_SECRET: TEST_COOKIE_SECRET,
  });
  provider = createOidcProvider({ config, clock: systemClock, log: createLogger({ level: 'silent' }) });
  return { server, provider };
}

describe('what a refusal of the refresh grant is', () => {
  const closing: Server[] = [];
  afterEach(() => {
    for (const s of closing.splice(0)) s.close();
  });

  async function refreshAgainst(answer: (res: ServerResponse) => void): Promise<RefreshError> {
    const { server, provider } = await fakeTokenEndpoint(answer);
    closing.push(server);
    return provider.refresh('rt').then(
      () => {
        throw new Error('the refresh should have failed');
      },
      (e: unknown) => e as RefreshError,
    );
  }

  it.each([
    ['a 400 with an empty body', 400, '', {}],
    ['a 400 with an HTML page', 400, '<html>Bad Request</html>', { 'content-type': 'text/html' }],
    ['a 401 with a WWW-Authenticate challenge', 401, '', { 'www-authenticate': 'Basic realm="token"' }],
    ['a 403 from a proxy', 403, 'Forbidden', { 'content-type': 'text/plain' }],
    ['a 400 invalid_grant', 400, '{"error":"invalid_grant"}', { 'content-type': 'application/json' }],
  ])('%s is terminal: the session ends', async (_name, status, body, headers) => {
    const error = await refreshAgainst((res) => {
      res.writeHead(status, headers);
      res.end(body);
    });
    expect(error).toBeInstanceOf(RefreshError);
    expect(error.kind).toBe('terminal');
    expect(error.status).toBe(status);
  });

  it.each([
    ['a 429 asking to slow down', 429, 'slow down'],
    ['a 502 from a proxy', 502, '<html>Bad Gateway</html>'],
    ['a 500 invalid_request (Dex: the connector failed)', 500, '{"error":"invalid_request"}'],
  ])('%s is transient: the session is kept', async (_name, status, body) => {
    const error = await refreshAgainst((res) => {
      res.writeHead(status, { 'content-type': body.startsWith('{') ? 'application/json' : 'text/html' });
      res.end(body);
    });
    expect(error.kind).toBe('transient');
  });

  it('a token endpoint that drops the connection is transient', async () => {
    const error = await refreshAgainst((res) => res.socket?.destroy());
    expect(error.kind).toBe('transient');
    expect(error.message).toMatch(/^token endpoint unreachable/);
  });
});

describe('the provider status /readyz reports', () => {
  it('is the result of the last call: unavailable once a call failed, ready again once one is answered', async () => {
    let failing = false;
    const { server, provider } = await fakeTokenEndpoint((res) => {
      if (failing) res.socket?.destroy();
      else {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_grant"}');
      }
    });
    try {
      await provider.refresh('rt').catch(() => undefined);
      expect(provider.status()).toBe('ready'); // a refusal is an answer
      expect(provider.lastCall()).toMatchObject({ operation: 'refresh', result: 'refused' });
      failing = true;
      await provider.refresh('rt').catch(() => undefined);
      expect(provider.status()).toBe('unavailable');
      expect(provider.lastCall()).toMatchObject({ operation: 'refresh', result: 'error' });
      failing = false;
      await provider.refresh('rt').catch(() => undefined);
      expect(provider.status()).toBe('ready');
    } finally {
      server.close();
    }
  });
});

describe('answers of the provider that are too large', () => {
  it('refuses an answer over PROVIDER_RESPONSE_MAX_BYTES, declared or streamed, and passes a small one whole', async () => {
    const big = new Uint8Array(PROVIDER_RESPONSE_MAX_BYTES + 1);
    await expect(boundedResponse(new Response(big))).rejects.toBeInstanceOf(TokenTooLarge);
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(64 * 1024)); // never ends: only the cap stops it
      },
    });
    await expect(boundedResponse(new Response(stream))).rejects.toBeInstanceOf(TokenTooLarge);
    const small = await boundedResponse(new Response('{"id_token":"x"}', { status: 200 }));
    expect(await small.json()).toEqual({ id_token: 'x' });
  });

  it('refuses an ID token over ID_TOKEN_MAX_BYTES and a claim over CLAIM_MAX_BYTES, naming the claim only', () => {
    expect(() => checkIdTokenSize('x'.repeat(ID_TOKEN_MAX_BYTES + 1))).toThrow(TokenTooLarge);
    expect(() => checkIdTokenSize('x'.repeat(1000))).not.toThrow();
    const secret = 's3cr3t'.repeat(CLAIM_MAX_BYTES / 4);
    expect(() => checkClaimSizes({ sub: 'a', groups: ['a', 'b'] })).not.toThrow();
    const thrown = (() => {
      try {
        checkClaimSizes({ sub: 'a', note: secret });
      } catch (error) {
        return error as AppError;
      }
    })();
    expect(thrown).toBeInstanceOf(TokenTooLarge);
    expect(thrown?.detail).toMatch(/^claim "note" of/);
    expect(thrown?.detail).not.toContain('s3cr3t');
    expect(thrown?.status).toBe(502);
  });

  it('ends the session (terminal) when a refresh answer is too large, also wrapped by openid-client', () => {
    const tooLarge = new TokenTooLarge('provider answer over 1024 KiB');
    expect(classifyRefreshError(tooLarge).kind).toBe('terminal');
    expect(classifyRefreshError(new Error('fetch failed', { cause: tooLarge })).kind).toBe('terminal');
    expect(translateRefreshedTokenError(tooLarge).kind).toBe('terminal');
  });
});
