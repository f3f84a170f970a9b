import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDiscovery } from '../../../src/doctor/checks/discovery.ts';
import { type Dex, PROFILES, startDex } from '../../support/dex.ts';
import {
  contextFor,
  contextWithDocument,
  DOCTOR_CALLBACK,
  DOCTOR_CLIENT_ID,
  doctorEnv,
} from '../../support/doctor.ts';
import { freePort } from '../../support/ports.ts';

const SECRET = 'doctor-discovery-secret';
let dex: Dex;
let generic: Dex;
beforeAll(async () => {
  const clients = [{ clientId: DOCTOR_CLIENT_ID, clientSecret: SECRET, redirectUris: [DOCTOR_CALLBACK] }];
  dex = await startDex({ clients });
  generic = await startDex({ clients, profile: PROFILES.minimalClaims });
});
afterAll(async () => {
  await dex?.close();
  await generic?.close();
});

describe('the discovery check', () => {
  it('finds Dex by its endpoint layout, and the issuer equal byte for byte', async () => {
    const findings = await checkDiscovery(contextFor(doctorEnv(dex, SECRET)));
    expect(findings).toEqual([
      expect.objectContaining({ topic: 'issuer', status: 'ok' }),
      expect.objectContaining({
        topic: 'provider',
        status: 'ok',
        message: expect.stringContaining('shows Dex'),
      }),
    ]);
  });

  it('says when the provider is a generic one, so that no Dex hint applies', async () => {
    const findings = await checkDiscovery(contextFor(doctorEnv(generic, SECRET)));
    expect(findings.find((f) => f.topic === 'provider')?.message).toMatch(/generic OpenID provider/);
  });

  it('reports an issuer that differs only by its trailing slash', async () => {
    const findings = await checkDiscovery(
      contextFor(doctorEnv(dex, SECRET, { OIDC_ISSUER_URL: dex.issuer.replace(/\/$/, '') })),
    );
    expect(findings.find((f) => f.topic === 'issuer')).toMatchObject({
      status: 'problem',
      message: expect.stringMatching(/byte for byte.*trailing slash/),
    });
  });

  it('names the cause when nothing answers', async () => {
    const port = await freePort();
    const findings = await checkDiscovery(
      contextFor(doctorEnv(dex, SECRET, { OIDC_ISSUER_URL: `http://127.0.0.1:${port}/` })),
    );
    expect(findings).toEqual([
      expect.objectContaining({
        status: 'problem',
        message: expect.stringContaining(`ECONNREFUSED 127.0.0.1:${port}`),
      }),
    ]);
  });

  it('warns when the provider’s clock is more than 30 s away', async () => {
    const issuer = 'https://idp.example.com/';
    const ctx = contextWithDocument(
      { issuer, authorization_endpoint: `${issuer}a`, token_endpoint: `${issuer}t`, jwks_uri: `${issuer}k` },
      {},
      new Date(Date.now() - 120_000).toUTCString(),
    );
    expect((await checkDiscovery(ctx)).find((f) => f.topic === 'clock')?.status).toBe('warning');
  });
});
