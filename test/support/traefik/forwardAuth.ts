/** The ForwardAuth client (spec §3): the auth request's headers and the Go http.Client call. */
import type { ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { handleAuthResponse } from './authResponse.ts';
import type { EmulatorContext, Profile, ResolvedForwardAuth, ResponseModifier } from './config.ts';
import { forwardedPort, type InboundRequest } from './entryPoint.ts';
import { GoHeader } from './goHeader.ts';
import { type GoURL, parseURL, requestURI } from './goUrl.ts';
import { dialEndpoint, goClientRequest, goResponseHeader, writeEmpty } from './goWire.ts';
import { AUTH_HOP_HEADERS, deleteManagedXHeaders, removeConnectionListedHeaders } from './headers.ts';

export type ForwardAuthOutcome = { done: true } | { done: false; modifier: ResponseModifier | undefined };

export async function forwardAuthStage(
  ctx: EmulatorContext,
  fa: ResolvedForwardAuth,
  r: InboundRequest,
  res: ServerResponse,
): Promise<ForwardAuthOutcome> {
  const address = fa.addresses[fa.nextAddress++ % fa.addresses.length] ?? '';
  const method = fa.preserveRequestMethod ? r.method : 'GET'; // §3.1

  let target: GoURL;
  try {
    target = parseURL(address); // http.NewRequest: a malformed address gives 500 on every request (§4)
  } catch {
    writeEmpty(res, 500);
    return { done: true };
  }

  const header = buildAuthRequestHeader(ctx.profile, fa, r);
  const response = await sendAuthRequest(ctx, method, target, header, res);
  return handleAuthResponse(ctx.profile, fa, target, r, res, response);
}

/** Spec §3.2 steps 1-6 (forward.go writeHeader / oldWriteHeader). */
export function buildAuthRequestHeader(
  profile: Profile,
  fa: ResolvedForwardAuth,
  r: InboundRequest,
): GoHeader {
  // 1. Copy every incoming header with all values.
  let h = r.header.clone();

  // 2. Connection-listed headers, then the fixed hop-by-hop list (Proxy-Authorization is kept).
  removeConnectionListedHeaders(h);
  for (const name of AUTH_HOP_HEADERS) h.del(name);

  // 3. Mode F deletes every managed X-header (and underscore spellings).
  if (fa.mode === 'F') deleteManagedXHeaders(h);

  // 4. User-Agent (§3.5): v3.6.9+ blanks it in modes F/T when the client sent none.
  if (profile === 'v3' && fa.mode !== 'L' && !r.header.has('User-Agent')) h.set('User-Agent', '');

  // 5. authRequestHeaders allow-list (case-insensitive, all values), before the computed headers.
  if (fa.authRequestHeaders.length > 0) {
    const filtered = new GoHeader();
    for (const name of fa.authRequestHeaders) {
      const values = h.values(name);
      if (values.length > 0) filtered.setValues(name, values);
    }
    h = filtered;
  }

  // 6. X-Forwarded-* per the §3.3 table.
  const requestURIValue = requestURI(r.url);
  if (fa.mode === 'L') {
    h.set('X-Forwarded-For', r.peerIP);
    h.set('X-Forwarded-Proto', 'http');
    h.set('X-Forwarded-Method', r.method);
    h.set('X-Forwarded-Host', r.host);
    h.set('X-Forwarded-Uri', requestURIValue);
    return h; // X-Forwarded-Port, X-Real-Ip, X-Forwarded-Server, X-Forwarded-Prefix pass as copied headers
  }
  const prior = h.values('X-Forwarded-For');
  h.set('X-Forwarded-For', prior.length > 0 ? `${prior.join(', ')}, ${r.peerIP}` : r.peerIP);
  if (!h.has('X-Forwarded-Method')) h.set('X-Forwarded-Method', r.method);
  if (!h.has('X-Forwarded-Proto')) h.set('X-Forwarded-Proto', 'http');
  if (!h.has('X-Forwarded-Port'))
    h.set('X-Forwarded-Port', forwardedPort(r.host, h.get('X-Forwarded-Proto')));
  if (!h.has('X-Forwarded-Host')) h.set('X-Forwarded-Host', r.host);
  if (!h.has('X-Forwarded-Uri')) h.set('X-Forwarded-Uri', requestURIValue);
  return h;
}

export type AuthResult =
  | { kind: 'transport-error' }
  | { kind: 'cancelled' }
  | { kind: 'read-error' }
  | { kind: 'response'; status: number; header: GoHeader; body: Buffer };

/**
 * The Go http.Client call (§3.1, §3.5, §3.7): no redirect following, one overall timeout covering connect,
 * headers and body, Accept-Encoding: gzip added when absent and undone transparently. In v3 a client that goes
 * away cancels the call (the request context is used).
 */
export function sendAuthRequest(
  ctx: EmulatorContext,
  method: string,
  target: GoURL,
  header: GoHeader,
  clientResponse: ServerResponse,
): Promise<AuthResult> {
  ctx.authCalls++;
  return new Promise<AuthResult>((resolve) => {
    const endpoint = dialEndpoint(target);
    if (endpoint === undefined) {
      resolve({ kind: 'transport-error' });
      return;
    }
    const acceptGzip =
      header.get('Accept-Encoding') === '' && header.get('Range') === '' && method !== 'HEAD';
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: AuthResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clientResponse.off('close', onClientGone);
      resolve(result);
    };

    const authReq = goClientRequest(
      ctx,
      method,
      endpoint,
      requestURI(target),
      target.host,
      header,
      acceptGzip,
    );
    timer = setTimeout(() => authReq.destroy(new Error('auth request timeout')), ctx.authTimeoutMs);
    const onClientGone = () => {
      if (ctx.profile === 'v3' && !clientResponse.writableFinished) {
        finish({ kind: 'cancelled' });
        authReq.destroy();
      }
    };
    clientResponse.on('close', onClientGone);

    authReq.on('error', () => finish({ kind: 'transport-error' }));
    authReq.on('response', (authRes) => {
      const chunks: Buffer[] = [];
      authRes.on('data', (chunk: Buffer) => chunks.push(chunk));
      authRes.on('error', () => finish({ kind: 'read-error' }));
      authRes.on('close', () => {
        if (!authRes.complete) finish({ kind: 'read-error' });
      });
      authRes.on('end', () => {
        const h = goResponseHeader(authRes);
        let body = Buffer.concat(chunks);
        if (acceptGzip && h.get('Content-Encoding').toLowerCase() === 'gzip') {
          try {
            body = gunzipSync(body);
          } catch {
            finish({ kind: 'read-error' });
            return;
          }
          h.del('Content-Encoding');
          h.del('Content-Length');
        }
        finish({ kind: 'response', status: authRes.statusCode ?? 500, header: h, body });
      });
    });
    authReq.end();
  });
}
