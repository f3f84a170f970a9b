/** What ForwardAuth does with the auth server's answer (spec §4): relay, copy headers, cookies. */
import type { ServerResponse } from 'node:http';
import type { Profile, ResolvedForwardAuth, ResponseModifier } from './config.ts';
import type { InboundRequest } from './entryPoint.ts';
import type { AuthResult, ForwardAuthOutcome } from './forwardAuth.ts';
import { cookieString, readSetCookies } from './goCookie.ts';
import type { GoHeader } from './goHeader.ts';
import { type GoURL, parseURL, resolveReference, urlString } from './goUrl.ts';
import { writeEmpty, writeGoRedirect, writeHeaderBlock } from './goWire.ts';
import { AUTH_HOP_HEADERS } from './headers.ts';

/** Spec §4 evaluation order. */
export function handleAuthResponse(
  profile: Profile,
  fa: ResolvedForwardAuth,
  target: GoURL,
  r: InboundRequest,
  res: ServerResponse,
  result: AuthResult,
): ForwardAuthOutcome {
  switch (result.kind) {
    case 'transport-error':
    case 'read-error':
      writeEmpty(res, 500); // §4.1: 500, empty body, Content-Length: 0
      return { done: true };
    case 'cancelled':
      writeEmpty(res, 499); // v3.5+: client closed request (nobody is listening any more)
      return { done: true };
  }
  if (fa.maxResponseBodySize >= 0 && result.body.length > fa.maxResponseBodySize) {
    writeEmpty(res, 401); // §4 step 2
    return { done: true };
  }
  if (fa.authSigninURL !== '' && result.status === 401) {
    writeGoRedirect(res, r, fa.authSigninURL, 302); // §4 step 4: no auth header is copied
    return { done: true };
  }
  if (result.status < 200 || result.status >= 300) {
    relayAuthResponse(fa, target, res, result.status, result.header, result.body);
    return { done: true };
  }
  copyAuthResponseHeaders(fa, r.header, result.header);
  return { done: false, modifier: authCookieModifier(profile, fa, result.header) };
}

/** §4.2: non-2xx goes back to the client with all headers (minus hop-by-hop), Location resolved, same body. */
export function relayAuthResponse(
  fa: ResolvedForwardAuth,
  target: GoURL,
  res: ServerResponse,
  status: number,
  authHeader: GoHeader,
  body: Buffer,
): void {
  const h = authHeader.clone();
  for (const name of AUTH_HOP_HEADERS) h.del(name);

  const location = h.get('Location');
  if (location !== '') {
    let resolved: string;
    try {
      // resp.Location() resolves against the auth request URL; preserveLocationHeader only round-trips it.
      const parsed = parseURL(location);
      resolved = urlString(fa.preserveLocationHeader ? parsed : resolveReference(target, parsed));
    } catch {
      // An unparseable Location gives 500; the auth headers were already copied and leak into it (§4.1).
      writeHeaderBlock(res, 500, h);
      if (Number(h.get('Content-Length') || '0') > 0) {
        // Go's server closes the connection when fewer bytes than the declared Content-Length were written.
        res.end(() => res.destroy());
      } else {
        res.end();
      }
      return;
    }
    if (resolved !== '') h.set('Location', resolved);
  }
  writeHeaderBlock(res, status, h);
  res.end(body);
}

/** §4.3: authResponseHeaders (delete, then set all values) followed by the regex (delete matches, copy matches). */
export function copyAuthResponseHeaders(
  fa: ResolvedForwardAuth,
  requestHeader: GoHeader,
  authHeader: GoHeader,
): void {
  for (const name of fa.authResponseHeaders) {
    requestHeader.del(name);
    const values = authHeader.values(name);
    if (values.length > 0) requestHeader.setValues(name, values);
  }
  const regex = fa.authResponseHeadersRegex;
  if (regex === undefined) return;
  for (const key of requestHeader.keys()) if (matches(regex, key)) requestHeader.deleteKey(key);
  for (const key of authHeader.keys())
    if (matches(regex, key)) requestHeader.setValues(key, authHeader.values(key));
}

export function matches(regex: RegExp, s: string): boolean {
  regex.lastIndex = 0;
  return regex.test(s);
}

/**
 * §4.4 (v3 only): when the 2xx auth reply has at least one parseable Set-Cookie, the downstream response's
 * cookies are re-parsed and re-serialised Go-style, listed names are removed, and the listed auth cookies
 * appended. This also applies when `addAuthCookiesToResponse` is empty.
 */
export function authCookieModifier(
  profile: Profile,
  fa: ResolvedForwardAuth,
  authHeader: GoHeader,
): ResponseModifier | undefined {
  if (profile === 'v2') return undefined;
  const authCookies = readSetCookies(authHeader);
  if (authCookies.length === 0) return undefined;
  const listed = fa.addAuthCookiesToResponse;
  return (header) => {
    const downstream = readSetCookies(header);
    header.del('Set-Cookie');
    for (const cookie of downstream)
      if (!listed.has(cookie.name)) header.add('Set-Cookie', cookieString(cookie));
    for (const cookie of authCookies)
      if (listed.has(cookie.name)) header.add('Set-Cookie', cookieString(cookie));
  };
}
