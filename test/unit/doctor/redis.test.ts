import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRedis } from '../../../src/doctor/checks/redis.ts';
import { contextWithDocument } from '../../support/doctor.ts';
import { freePort } from '../../support/ports.ts';
import { type RedisServer, startRedis } from '../../support/redis.ts';

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
});

const doc = {
  issuer: 'https://idp.example.com/',
  authorization_endpoint: 'x',
  token_endpoint: 'x',
  jwks_uri: 'x',
};

describe('the Redis check', () => {
  it('warns that without Redis only one replica may run', async () => {
    expect(await checkRedis(contextWithDocument(doc))).toEqual([
      expect.objectContaining({ status: 'warning' }),
    ]);
  });

  it('writes and reads a value back from a reachable Redis', async () => {
    expect(await checkRedis(contextWithDocument(doc, { REDIS_URL: redis.url }))).toEqual([
      expect.objectContaining({ status: 'ok', message: expect.stringContaining('reachable and writable') }),
    ]);
  });

  it('reports a Redis nobody answers at', async () => {
    const ctx = {
      ...contextWithDocument(doc, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` }),
      timeoutMs: 1_000,
    };
    expect((await checkRedis(ctx))[0]).toMatchObject({
      status: 'problem',
      message: expect.stringContaining('not reachable'),
    });
  });
});
