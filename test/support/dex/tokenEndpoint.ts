import { type IncomingHttpHeaders, IncomingMessage, type ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { authenticateClient } from './clientAuth.ts';
import { CLAIMED } from './dexShape.ts';
import type { DexRefreshShim } from './dexShims.ts';
import type { StandInProfile } from './profiles.ts';
import type { DexClient, DexCounts } from './types.ts';
import { formEncode, readBody, sendEmpty, sendJson } from './wire.ts';

/**
 * POST /token before oidc-provider sees it: counting, client authentication as the profile says,
 * injected failures, Dex's refresh algorithm; then the request is replayed to oidc-provider with
 * the client's internal Basic credentials.
 */

export interface TokenHost {
  readonly counts: DexCounts;
  readonly clients: readonly DexClient[];
  readonly profile: StandInProfile;
  readonly issuerHost: string;
  /** What a private_key_jwt assertion's `aud` may be: the issuer or the token endpoint. */
  readonly assertionAudiences: string[];
  readonly shim: DexRefreshShim;
  internalSecret(client: DexClient): string;
  /** The status of an injected refresh failure, when one is due. */
  takeFailure(): number | undefined;
  handler(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

/** A refusal of the stand-in's own making, empty-bodied where the profile says so. */
export function refuse(res: ServerResponse, profile: StandInProfile, status: number, body: unknown): void {
  if (profile.emptyRefusals && status >= 400 && status < 500) sendEmpty(res, status);
  else sendJson(res, status, body);
}

function sendFailure(res: ServerResponse, profile: StandInProfile, status: number): void {
  if (status === 500) sendJson(res, 500, { error: 'invalid_request' });
  else if (status === 401)
    refuse(res, profile, 401, { error: 'invalid_client', error_description: 'Invalid client credentials.' });
  else if (status >= 400 && status < 500)
    refuse(res, profile, status, { error: 'invalid_request', error_description: CLAIMED });
  else sendJson(res, status, { error: 'server_error' });
}

/** The same request, as oidc-provider should see it: internal Basic credentials, no PKCE if ignored. */
function replay(req: IncomingMessage, host: TokenHost, client: DexClient, form: URLSearchParams) {
  const body = Buffer.from(form.toString(), 'utf8');
  const basic = `${formEncode(client.clientId)}:${formEncode(host.internalSecret(client))}`;
  const headers: IncomingHttpHeaders = {
    ...req.headers,
    host: host.issuerHost,
    authorization: `Basic ${Buffer.from(basic).toString('base64')}`,
    'content-type': 'application/x-www-form-urlencoded',
    'content-length': String(body.length),
  };
  delete headers['transfer-encoding'];
  const copy = new IncomingMessage(new Socket()) as IncomingMessage & { originalUrl?: string };
  copy.method = req.method;
  copy.url = req.url;
  copy.originalUrl = (req as IncomingMessage & { originalUrl?: string }).originalUrl;
  copy.headers = headers;
  copy.httpVersion = req.httpVersion;
  copy.httpVersionMajor = req.httpVersionMajor;
  copy.httpVersionMinor = req.httpVersionMinor;
  copy.push(body);
  copy.push(null);
  copy.complete = true;
  return copy;
}

/**
 * The form of a client's POST, once the client authenticated (Dex-style: any method, or the
 * profile's), without its credentials; undefined when it was refused (the answer is sent).
 * `received` sees the form first, authenticated or not.
 */
async function authenticatedForm(
  host: TokenHost,
  req: IncomingMessage,
  res: ServerResponse,
  received: (form: URLSearchParams) => void = () => {},
): Promise<{ form: URLSearchParams; client: DexClient } | undefined> {
  let raw: Buffer;
  try {
    raw = await readBody(req);
  } catch {
    sendJson(res, 400, { error: 'invalid_request', error_description: 'Failed to read request body.' });
    return undefined;
  }
  const form = new URLSearchParams(raw.toString('utf8'));
  received(form);
  const client = await authenticateClient(req, form, host.clients, host.profile, host.assertionAudiences);
  if (!client) {
    refuse(res, host.profile, 401, {
      error: 'invalid_client',
      error_description: 'Invalid client credentials.',
    });
    return undefined;
  }
  for (const name of ['client_id', 'client_secret', 'client_assertion', 'client_assertion_type'])
    form.delete(name);
  return { form, client };
}

export async function handleToken(host: TokenHost, req: IncomingMessage, res: ServerResponse): Promise<void> {
  res.on('finish', () => {
    if (res.statusCode >= 400) host.counts.tokenErrors++;
  });
  const authenticated = await authenticatedForm(host, req, res, (form) => {
    const grantType = form.get('grant_type');
    if (grantType === 'refresh_token') host.counts.refreshGrants++;
    else if (grantType === 'authorization_code') host.counts.codeGrants++;
  });
  if (!authenticated) return;
  const { form, client } = authenticated;
  if (host.profile.pkce === false) form.delete('code_verifier');

  if (form.get('grant_type') === 'refresh_token') {
    const failure = host.takeFailure();
    if (failure !== undefined) {
      sendFailure(res, host.profile, failure);
      return;
    }
    if (host.shim.dexMode && (await host.shim.refresh(form, client, res))) return;
  }
  await host.handler(replay(req, host, client, form), res);
}

/**
 * POST /token/revocation (RFC 7009, profiles with revocation): the client authenticated as at
 * /token — Dex-style, any method, or the profile's — then replayed to oidc-provider.
 */
export async function handleRevocation(
  host: TokenHost,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  host.counts.revocations++;
  const authenticated = await authenticatedForm(host, req, res);
  if (!authenticated) return;
  await host.handler(replay(req, host, authenticated.client, authenticated.form), res);
}
