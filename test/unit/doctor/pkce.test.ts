import { describe, expect, it } from 'vitest';
import { checkPkce } from '../../../src/doctor/checks/pkce.ts';
import { contextWithDocument } from '../../support/doctor.ts';

const issuer = 'https://idp.example.com/';
const base = {
  issuer,
  authorization_endpoint: `${issuer}auth`,
  token_endpoint: `${issuer}token`,
  jwks_uri: `${issuer}jwks`,
};

describe('the PKCE check', () => {
  it('is content when discovery offers S256', async () => {
    const [finding] = await checkPkce(
      contextWithDocument({ ...base, code_challenge_methods_supported: ['S256', 'plain'] }),
    );
    expect(finding?.status).toBe('ok');
  });

  it('says so when the provider does not advertise PKCE at all, and what logins do then', async () => {
    const [finding] = await checkPkce(contextWithDocument(base));
    expect(finding).toMatchObject({
      status: 'warning',
      message: expect.stringMatching(
        /does not advertise PKCE.*code_challenge_methods_supported.*state and nonce/,
      ),
    });
    expect(finding?.message).not.toContain('Dex');
  });

  it('says so when the methods it lists leave S256 out', async () => {
    const [finding] = await checkPkce(
      contextWithDocument({ ...base, code_challenge_methods_supported: ['plain'] }),
    );
    expect(finding).toMatchObject({ status: 'warning', message: expect.stringContaining('not S256') });
  });
});
