import { describe, expect, it } from 'vitest';
import { checkScopes } from '../../../src/doctor/checks/scopes.ts';
import { contextWithDocument } from '../../support/doctor.ts';

const generic = 'https://idp.example.com/';
const doc = {
  issuer: generic,
  authorization_endpoint: `${generic}authorize`,
  token_endpoint: `${generic}token`,
  jwks_uri: `${generic}certs`,
  scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
};
const dexIssuer = 'https://dex.example.com/dex';
const dexDoc = {
  issuer: dexIssuer,
  authorization_endpoint: `${dexIssuer}/auth`,
  token_endpoint: `${dexIssuer}/token`,
  jwks_uri: `${dexIssuer}/keys`,
  scopes_supported: ['openid', 'email', 'groups', 'profile', 'offline_access'],
};

describe('the scopes check', () => {
  it('warns about scopes the provider does not list, in the provider’s own name', async () => {
    const [finding] = await checkScopes(contextWithDocument(doc));
    expect(finding).toMatchObject({
      status: 'warning',
      message: expect.stringMatching(/^the identity provider does not list groups/),
    });
  });

  it('never warns about Dex’s cross-client audience scope, which Dex accepts unlisted', async () => {
    const ctx = contextWithDocument(dexDoc, {
      OIDC_SCOPES: 'openid profile email groups offline_access audience:server:client_id:kubernetes',
    });
    expect(await checkScopes(ctx)).toEqual([expect.objectContaining({ status: 'ok' })]);
  });

  it('warns that without offline_access there is no refresh token', async () => {
    const ctx = contextWithDocument(dexDoc, { OIDC_SCOPES: 'openid email groups' });
    const [finding] = await checkScopes(ctx);
    expect(finding).toMatchObject({
      status: 'warning',
      message: expect.stringMatching(/offline_access: Dex issues no refresh token/),
    });
  });
});
