import type { IncomingMessage, ServerResponse } from 'node:http';
import { compactVerify, createLocalJWKSet, type JWK } from 'jose';
import { errorPage } from './pages.ts';
import type { DexClient, DexCounts } from './types.ts';
import { escapeHtml } from './wire.ts';

/**
 * An end_session_endpoint as strict as Okta's (RP-Initiated Logout 1.0 §2): no valid
 * `id_token_hint` (signed by us, for a registered client; expired is fine, as the spec allows) →
 * a blank 400 and the login session stays; a `post_logout_redirect_uri` must be registered.
 * Accepted: the login session cookie is cleared and the browser sent back.
 */

export const END_SESSION_PATH = '/session/end';

export interface EndSessionHost {
  readonly issuer: string;
  readonly clients: readonly DexClient[];
  readonly counts: DexCounts;
  publicKeys(): JWK[];
}

const SESSION_COOKIES = ['_session', '_session.sig'];

async function hintedClient(host: EndSessionHost, hint: string | null): Promise<DexClient | undefined> {
  if (!hint) return undefined;
  try {
    const { payload } = await compactVerify(hint, createLocalJWKSet({ keys: host.publicKeys() }));
    const claims = JSON.parse(new TextDecoder().decode(payload)) as { iss?: unknown; aud?: unknown };
    if (claims.iss !== host.issuer) return undefined;
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    return host.clients.find((c) => audiences.includes(c.clientId));
  } catch {
    return undefined;
  }
}

function page(
  res: ServerResponse,
  status: number,
  html: string,
  headers: Record<string, string | string[]> = {},
) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(html);
}

export async function handleEndSession(host: EndSessionHost, req: IncomingMessage, res: ServerResponse) {
  const query = new URL(req.url ?? '/', 'http://stand-in').searchParams;
  const client = await hintedClient(host, query.get('id_token_hint'));
  if (!client) {
    page(res, 400, ''); // what users of such providers see: a blank page, still signed in
    return;
  }
  const back = query.get('post_logout_redirect_uri');
  if (back && !(client.postLogoutRedirectUris ?? []).includes(back)) {
    page(res, 400, errorPage('Bad Request', 'post_logout_redirect_uri is not registered for this client.'));
    return;
  }
  host.counts.endSessions++;
  const cleared = SESSION_COOKIES.map((name) => `${name}=; Path=/; Max-Age=0; HttpOnly`);
  if (!back) {
    page(
      res,
      200,
      `<!DOCTYPE html><title>Signed out</title><p>You are signed out of ${escapeHtml(host.issuer)}.</p>`,
      {
        'set-cookie': cleared,
      },
    );
    return;
  }
  const target = new URL(back);
  const state = query.get('state');
  if (state) target.searchParams.set('state', state);
  res.writeHead(302, { location: target.href, 'set-cookie': cleared, 'cache-control': 'no-store' });
  res.end();
}
