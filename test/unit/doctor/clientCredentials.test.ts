import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkClientCredentials } from '../../../src/doctor/checks/clientCredentials.ts';
import type { TokenProbe, TokenProbeOptions } from '../../../src/oidc/probe.ts';
import { type Dex, PROFILES, PUNCTUATED_SECRET, type StandInProfile, startDex } from '../../support/dex.ts';
import {
  contextFor,
  contextWithDocument,
  DOCTOR_CALLBACK,
  DOCTOR_CLIENT_ID,
  doctorEnv,
} from '../../support/doctor.ts';

/** The token-endpoint probe, against the stand-in's profiles and against answers made up for the purpose. */

const SECRET = 'doctor-client-secret-for-tests';
const started: Dex[] = [];
afterAll(async () => {
  await Promise.all(started.map((d) => d.close()));
});

async function provider(profile: StandInProfile, secret = SECRET): Promise<Dex> {
  const dex = await startDex({
    profile,
    clients: [{ clientId: DOCTOR_CLIENT_ID, clientSecret: secret, redirectUris: [DOCTOR_CALLBACK] }],
  });
  started.push(dex);
  return dex;
}

let dex: Dex;
beforeAll(async () => {
  dex = await provider(PROFILES.dex);
});

const issuer = 'https://idp.example.com/';
const genericDoc = {
  issuer,
  authorization_endpoint: `${issuer}authorize`,
  token_endpoint: `${issuer}token`,
  jwks_uri: `${issuer}certs`,
};
const dexDoc = {
  issuer: 'https://dex.example.com/',
  authorization_endpoint: 'https://dex.example.com/auth',
  token_endpoint: 'https://dex.example.com/token',
  jwks_uri: 'https://dex.example.com/keys',
};
/** A probe that answers as told and records what it was asked. */
function answering(answer: TokenProbe) {
  const asked: TokenProbeOptions[] = [];
  const probe = async (_c: unknown, _d: unknown, options: TokenProbeOptions) => {
    asked.push(options);
    return answer;
  };
  return { probe, asked };
}

describe('the client credentials check', () => {
  it('accepts credentials the token endpoint authenticated before it refused the made-up code', async () => {
    const [finding] = await checkClientCredentials(contextFor(doctorEnv(dex, SECRET)));
    expect(finding).toMatchObject({ status: 'ok', message: expect.stringContaining('invalid_grant') });
  });

  it('tests the method login uses: client_secret_post where that is all the provider takes', async () => {
    const post = await provider(PROFILES.postOnly, PUNCTUATED_SECRET);
    const [finding] = await checkClientCredentials(contextFor(doctorEnv(post, PUNCTUATED_SECRET)));
    expect(finding).toMatchObject({ status: 'ok', message: expect.stringContaining('client_secret_post') });
  });

  it('reports a wrong secret, pointing at Dex only when the provider is Dex', async () => {
    const [atDex] = await checkClientCredentials(contextFor(doctorEnv(dex, 'not-the-registered-secret')));
    expect(atDex).toMatchObject({ status: 'problem', message: expect.stringContaining('invalid_client') });
    expect(atDex?.message).toContain('staticClients entry in Dex');
    const generic = await provider(PROFILES.minimalClaims);
    const [elsewhere] = await checkClientCredentials(
      contextFor(doctorEnv(generic, 'not-the-registered-secret')),
    );
    expect(elsewhere?.message).toContain('the client registered at the identity provider');
    expect(elsewhere?.message).not.toContain('Dex');
  });

  it('says when Basic form-encoding is the cause: a provider that accepts the punctuated secret only unencoded', async () => {
    const undecoded = await provider(PROFILES.undecodedBasic, PUNCTUATED_SECRET);
    const [finding] = await checkClientCredentials(contextFor(doctorEnv(undecoded, PUNCTUATED_SECRET)));
    expect(finding).toMatchObject({
      status: 'warning',
      message: expect.stringMatching(/unencoded.*RFC 6749 §2\.3\.1/),
    });
    expect(JSON.stringify(finding)).not.toContain(PUNCTUATED_SECRET);
  });

  it('says when the body is the way out: Basic chosen by hand at a provider that takes the secret only in the body', async () => {
    const post = await provider(PROFILES.postOnly, PUNCTUATED_SECRET);
    const env = doctorEnv(post, PUNCTUATED_SECRET, { OIDC_TOKEN_AUTH_METHOD: 'client_secret_basic' });
    const [finding] = await checkClientCredentials(contextFor(env));
    expect(finding).toMatchObject({
      status: 'problem',
      message: expect.stringContaining('set OIDC_TOKEN_AUTH_METHOD=client_secret_post'),
    });
  });

  it('probes with the real callback of --host, not a made-up one', async () => {
    const { probe, asked } = answering({ status: 400, error: 'invalid_grant' });
    const ctx = contextWithDocument(genericDoc, { REDIRECT_URL: '' });
    const withHost = { ...ctx, callbacks: () => ['https://grafana.example.com/oauth2/callback'] };
    await checkClientCredentials(withHost, probe);
    expect(asked[0]?.redirectUri).toBe('https://grafana.example.com/oauth2/callback');
  });

  it('does not read unauthorized_client as bad credentials: the client authenticated but may not use the grant', async () => {
    const { probe } = answering({ status: 400, error: 'unauthorized_client' });
    const [finding] = await checkClientCredentials(contextWithDocument(genericDoc), probe);
    expect(finding).toMatchObject({ status: 'problem', message: expect.stringContaining('authenticated') });
    expect(finding?.message).not.toContain('rejected');
  });

  it('reads invalid_code as a judged code, so the credentials were right', async () => {
    const { probe } = answering({ status: 400, error: 'invalid_code' });
    expect((await checkClientCredentials(contextWithDocument(genericDoc), probe))[0]?.status).toBe('ok');
  });

  it('reads invalid_request as proof only at Dex, which authenticates the client first', async () => {
    const { probe } = answering({ status: 400, error: 'invalid_request' });
    expect((await checkClientCredentials(contextWithDocument(genericDoc), probe))[0]?.status).toBe('warning');
    expect((await checkClientCredentials(contextWithDocument(dexDoc), probe))[0]?.status).toBe('ok');
  });

  it('cannot tell anything from a 400 without an OAuth error', async () => {
    const { probe } = answering({ status: 400, error: undefined });
    const [finding] = await checkClientCredentials(contextWithDocument(genericDoc), probe);
    expect(finding).toMatchObject({
      status: 'warning',
      message: expect.stringContaining('without an OAuth error'),
    });
  });
});
