import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIssuerVerifier, IssuerUnavailable, TokenRejected } from '../../src/identity/jwtIssuers.ts';
import { createLogger } from '../../src/log.ts';

/**
 * One issuer of an AuthenticationConfiguration served over https on loopback with a private CA
 * (openssl): discovery and JWKS are fetched through `certificateAuthority`, and tokens are
 * checked as the API server checks them.
 */

let server: Server;
let dir: string;
let ca: string;
let issuer: string;
let key: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let es256: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'issuer-ca-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  ca = readFileSync(join(dir, 'cert.pem'), 'utf8');
  const rsa = await generateKeyPair('RS256');
  const ec = await generateKeyPair('ES256');
  key = rsa.privateKey;
  es256 = ec.privateKey;
  const jwks: JWK[] = [
    { ...(await exportJWK(rsa.publicKey)), kid: 'rsa', alg: 'RS256', use: 'sig' },
    { ...(await exportJWK(ec.publicKey)), kid: 'ec', alg: 'ES256', use: 'sig' },
  ];
  server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/keys` }));
    } else if (req.url === '/custom-discovery') {
      res.end(JSON.stringify({ issuer: `${issuer}/custom`, jwks_uri: `${issuer}/keys` }));
    } else if (req.url === '/keys') {
      res.end(JSON.stringify({ keys: jwks }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const log = createLogger({ level: 'silent' });
const clock = { now: () => Date.now() };

function sign(claims: Record<string, unknown>, alg = 'RS256') {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: issuer, aud: 'kubernetes', exp: now + 300, ...claims })
    .setProtectedHeader({ alg, kid: alg === 'RS256' ? 'rsa' : 'ec' })
    .sign(alg === 'RS256' ? key : es256);
}

describe('an issuer reached over https with its certificateAuthority', () => {
  it('fetches discovery and keys through the CA and accepts a valid token', async () => {
    const v = createIssuerVerifier({
      issuerUrl: issuer,
      discoveryUrl: undefined,
      certificateAuthority: ca,
      audiences: ['kubernetes'],
      clock,
      log,
    });
    try {
      const claims = await v.verify(await sign({ sub: 'jane' }));
      expect(claims['sub']).toBe('jane');
      expect(v.status()).toBe('ready');
    } finally {
      v.close();
    }
  });

  it('cannot reach the issuer without the CA (the system roots do not know it)', async () => {
    const v = createIssuerVerifier({
      issuerUrl: issuer,
      discoveryUrl: undefined,
      certificateAuthority: undefined,
      audiences: ['kubernetes'],
      clock,
      log,
    });
    try {
      await expect(v.verify(await sign({ sub: 'jane' }))).rejects.toBeInstanceOf(IssuerUnavailable);
    } finally {
      v.close();
    }
  });

  it('accepts ES256 as the API server does with an authentication config, and refuses an audience of none of the list', async () => {
    const v = createIssuerVerifier({
      issuerUrl: issuer,
      discoveryUrl: undefined,
      certificateAuthority: ca,
      audiences: ['a', 'kubernetes'],
      clock,
      log,
    });
    try {
      expect((await v.verify(await sign({ sub: 'ec' }, 'ES256')))['sub']).toBe('ec');
      await expect(v.verify(await sign({ aud: ['b', 'c'] }))).rejects.toBeInstanceOf(TokenRejected);
    } finally {
      v.close();
    }
  });

  it('uses discoveryURL instead of {url}/.well-known/openid-configuration', async () => {
    const v = createIssuerVerifier({
      issuerUrl: `${issuer}/custom`,
      discoveryUrl: `${issuer}/custom-discovery`,
      certificateAuthority: ca,
      audiences: ['kubernetes'],
      clock,
      log,
    });
    try {
      expect((await v.verify(await sign({ iss: `${issuer}/custom`, sub: 'd' })))['sub']).toBe('d');
    } finally {
      v.close();
    }
  });

  it("refuses a discoveryURL whose document's issuer is not url", async () => {
    const v = createIssuerVerifier({
      issuerUrl: `${issuer}/other`,
      discoveryUrl: `${issuer}/.well-known/openid-configuration`,
      certificateAuthority: ca,
      audiences: ['kubernetes'],
      clock,
      log,
    });
    try {
      await expect(v.verify(await sign({ iss: `${issuer}/other` }))).rejects.toBeInstanceOf(
        IssuerUnavailable,
      );
    } finally {
      v.close();
    }
  });
});
