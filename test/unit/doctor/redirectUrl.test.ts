import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRedirectUrls } from '../../../src/doctor/checks/redirectUrl.ts';
import { type Dex, PROFILES, startDex } from '../../support/dex.ts';
import {
  contextFor,
  contextWithDocument,
  DOCTOR_CALLBACK,
  DOCTOR_CLIENT_ID,
  doctorEnv,
} from '../../support/doctor.ts';
import { freePort } from '../../support/ports.ts';

const clients = [{ clientId: DOCTOR_CLIENT_ID, clientSecret: 's', redirectUris: [DOCTOR_CALLBACK] }];
let dex: Dex;
let generic: Dex;
let refusing: Server;
let refusingUrl: string;
beforeAll(async () => {
  dex = await startDex({ clients });
  generic = await startDex({ clients, profile: PROFILES.minimalClaims });
  const port = await freePort();
  refusing = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const back = new URL(url.searchParams.get('redirect_uri') ?? 'http://x/');
    back.searchParams.set('error', 'invalid_scope');
    res.writeHead(302, { location: back.href });
    res.end();
  });
  await new Promise<void>((resolve) => refusing.listen(port, '127.0.0.1', resolve));
  refusingUrl = `http://127.0.0.1:${port}/authorize`;
});
afterAll(async () => {
  await dex?.close();
  await generic?.close();
  refusing?.close();
});

describe('the redirect URL check', () => {
  it('accepts a callback the provider registered for the client', async () => {
    expect(await checkRedirectUrls(contextFor(doctorEnv(dex, 's')))).toEqual([
      expect.objectContaining({ status: 'ok' }),
    ]);
  });

  it('reports an unregistered callback in the words of the provider at hand', async () => {
    const other = 'http://other.apps.localhost:8080/oauth2/callback';
    const [atDex] = await checkRedirectUrls(contextFor(doctorEnv(dex, 's', { REDIRECT_URL: other })));
    expect(atDex).toMatchObject({
      status: 'problem',
      message: expect.stringContaining('redirectURIs in Dex'),
    });
    const [elsewhere] = await checkRedirectUrls(contextFor(doctorEnv(generic, 's', { REDIRECT_URL: other })));
    expect(elsewhere?.message).toContain(
      `redirect URIs of client "${DOCTOR_CLIENT_ID}" at the identity provider`,
    );
    expect(elsewhere?.message).not.toContain('Dex');
  });

  it('checks each --host callback when REDIRECT_URL is unset, and says what to do without any', async () => {
    const { REDIRECT_URL: _, ...env } = doctorEnv(dex, 's', { COOKIE_SECURE: 'false' });
    const findings = await checkRedirectUrls(
      contextFor(env, { hosts: ['auth.apps.localhost:8080', 'grafana.apps.localhost:8080'] }),
    );
    expect(findings.map((f) => f.status)).toEqual(['ok', 'problem']);
    expect((await checkRedirectUrls(contextFor(env)))[0]?.status).toBe('skipped');
  });

  it('reads an error sent back to the callback as "registered, but refused for that reason"', async () => {
    const ctx = contextWithDocument(
      {
        issuer: 'https://idp.example.com/',
        authorization_endpoint: refusingUrl,
        token_endpoint: 'x',
        jwks_uri: 'x',
      },
      { OIDC_ALLOW_INSECURE_HTTP: 'true' },
    );
    const [finding] = await checkRedirectUrls(ctx);
    expect(finding).toMatchObject({
      status: 'problem',
      message: expect.stringMatching(/knows the callback.*invalid_scope.*OIDC_SCOPES/),
    });
  });
});
