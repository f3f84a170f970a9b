import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkJwks } from '../../../src/doctor/checks/jwks.ts';
import { type Dex, startDex } from '../../support/dex.ts';
import {
  contextFor,
  contextWithDocument,
  DOCTOR_CALLBACK,
  DOCTOR_CLIENT_ID,
  doctorEnv,
} from '../../support/doctor.ts';
import { freePort } from '../../support/ports.ts';

let dex: Dex;
let empty: Server;
let emptyUrl: string;
beforeAll(async () => {
  dex = await startDex({
    clients: [{ clientId: DOCTOR_CLIENT_ID, clientSecret: 's', redirectUris: [DOCTOR_CALLBACK] }],
  });
  const port = await freePort();
  empty = createServer((req, res) => {
    res.writeHead(req.url === '/keys' ? 200 : 404, { 'content-type': 'application/json' });
    res.end('{"keys":[]}');
  });
  await new Promise<void>((resolve) => empty.listen(port, '127.0.0.1', resolve));
  emptyUrl = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await dex?.close();
  empty?.close();
});

const docWith = (jwks: string) => ({
  issuer: 'https://idp.example.com/',
  authorization_endpoint: 'x',
  token_endpoint: 'x',
  jwks_uri: jwks,
});

describe('the JWKS check', () => {
  it('counts the signing keys the provider publishes', async () => {
    expect(await checkJwks(contextFor(doctorEnv(dex, 's')))).toEqual([
      expect.objectContaining({ status: 'ok', message: expect.stringContaining('publishes 1 signing key') }),
    ]);
  });

  it('reports a JWKS without signing keys, and one that is not there', async () => {
    expect((await checkJwks(contextWithDocument(docWith(`${emptyUrl}/keys`))))[0]?.message).toContain(
      'no signing keys',
    );
    expect((await checkJwks(contextWithDocument(docWith(`${emptyUrl}/gone`))))[0]?.message).toContain(
      'HTTP 404',
    );
  });
});
