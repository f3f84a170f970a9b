/** Go's HTTP client and server on the wire: request framing, response header maps, error pages, redirects. */
import {
  type ClientRequest,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { EmulatorContext } from './config.ts';
import type { InboundRequest } from './entryPoint.ts';
import { GoHeader, netSplitHostPort } from './goHeader.ts';
import { type GoURL, parseURL, pathClean } from './goUrl.ts';

export const GO_DEFAULT_USER_AGENT = 'Go-http-client/1.1';

export interface DialEndpoint {
  hostname: string;
  port: number;
}

/** Where to connect for an http:// URL. Only loopback is dialled (anything else counts as unreachable). */
export function dialEndpoint(u: GoURL): DialEndpoint | undefined {
  if (u.scheme !== 'http' || u.host === '') return undefined;
  const split = netSplitHostPort(u.host);
  const hostname = (split?.host ?? u.host).replace(/^\[(.*)\]$/, '$1');
  const port = split?.port ? Number(split.port) : 80;
  const loopback = hostname === 'localhost' || hostname === '::1' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
  return loopback && Number.isInteger(port) ? { hostname, port } : undefined;
}

/**
 * A Node client request that looks like Go's on the wire (net/http Request.write): Host, User-Agent (first
 * value; none when empty; Go's default when absent), the header map sorted by name without the framing headers
 * Go never copies from the map (Content-Length, Transfer-Encoding, Trailer), then the transport's
 * Accept-Encoding. No Connection header. Framing comes from the body actually sent.
 */
export function goClientRequest(
  ctx: EmulatorContext,
  method: string,
  endpoint: DialEndpoint,
  path: string,
  host: string,
  header: GoHeader,
  acceptGzip: boolean,
  contentLength = 0,
): ClientRequest {
  const wire: OutgoingHttpHeaders = { Host: host };
  const userAgent = header.has('User-Agent') ? header.get('User-Agent') : GO_DEFAULT_USER_AGENT;
  if (userAgent !== '') wire['User-Agent'] = userAgent;
  for (const [key, values] of header.sortedEntries()) {
    if (['Host', 'User-Agent', 'Content-Length', 'Transfer-Encoding', 'Trailer'].includes(key)) continue;
    wire[key] = values.length === 1 ? values[0] : values;
  }
  if (acceptGzip) wire['Accept-Encoding'] = [...header.values('Accept-Encoding'), 'gzip'];
  if (contentLength > 0) wire['Content-Length'] = String(contentLength);
  if (contentLength < 0) wire['Transfer-Encoding'] = 'chunked';

  const req = httpRequest({
    host: endpoint.hostname,
    port: endpoint.port,
    method,
    path,
    headers: wire,
    setHost: false,
    agent: ctx.agent,
  });
  try {
    req.removeHeader('Connection'); // Go sends none; HTTP/1.1 keep-alive is implied
  } catch {
    // headers already flushed (Expect: 100-continue): Node's Connection header stays
  }
  return req;
}

/** A response header map as Go's client builds it (readTransfer drops the framing headers). */
export function goResponseHeader(res: IncomingMessage): GoHeader {
  const h = GoHeader.fromRaw(res.rawHeaders);
  if (h.has('Transfer-Encoding')) {
    h.del('Transfer-Encoding');
    h.del('Content-Length');
    h.del('Trailer');
  }
  return h;
}

/** Status and headers (canonical names, sorted, every value on its own line). Go sends no Connection header. */
export function writeHeaderBlock(res: ServerResponse, status: number, header: GoHeader): void {
  res.statusCode = status;
  res.removeHeader('Connection');
  for (const [key, values] of header.sortedEntries())
    res.setHeader(key, values.length === 1 ? values[0]! : values);
}

/** `rw.WriteHeader(code)` with no body: Go adds Content-Length: 0 (and Date). */
export function writeEmpty(res: ServerResponse, status: number): void {
  writeHeaderBlock(res, status, new GoHeader());
  res.setHeader('Content-Length', '0');
  res.end();
}

/** net/http http.Error. */
export function writeGoHttpError(res: ServerResponse, status: number, message: string): void {
  const h = new GoHeader();
  h.set('Content-Type', 'text/plain; charset=utf-8');
  h.set('X-Content-Type-Options', 'nosniff');
  writeHeaderBlock(res, status, h);
  res.end(`${message}\n`);
}

/** Go's server answer to a request line it cannot parse. */
export function writeGoServerBadRequest(res: ServerResponse): void {
  res.shouldKeepAlive = false;
  const h = new GoHeader();
  h.set('Content-Type', 'text/plain; charset=utf-8');
  writeHeaderBlock(res, 400, h);
  res.setHeader('Connection', 'close');
  res.end('400 Bad Request');
}

/** net/http http.Redirect, as used for authSigninURL (§4 step 4). */
export function writeGoRedirect(res: ServerResponse, r: InboundRequest, target: string, code: number): void {
  let url = target;
  let relative = false;
  try {
    const parsed = parseURL(url);
    relative = parsed.scheme === '' && parsed.host === '';
  } catch {
    relative = false;
  }
  if (relative) {
    // Make a relative path absolute by combining it with the request path; clean it, keep a trailing slash.
    if (url === '' || !url.startsWith('/')) {
      const oldPath = r.url.path === '' ? '/' : r.url.path;
      url = oldPath.slice(0, oldPath.lastIndexOf('/') + 1) + url;
    }
    let query = '';
    const queryIndex = url.indexOf('?');
    if (queryIndex !== -1) {
      query = url.slice(queryIndex);
      url = url.slice(0, queryIndex);
    }
    const trailing = url.endsWith('/');
    url = pathClean(url);
    if (trailing && !url.endsWith('/')) url += '/';
    url += query;
  }
  const h = new GoHeader();
  h.set(
    'Location',
    url.replace(/[\x80-\xff]/g, (c) => `%${c.charCodeAt(0).toString(16)}`),
  );
  if (r.method === 'GET' || r.method === 'HEAD') h.set('Content-Type', 'text/html; charset=utf-8');
  writeHeaderBlock(res, code, h);
  if (r.method === 'GET') res.end(`<a href="${htmlEscape(url)}">${STATUS_CODES[code] ?? ''}</a>.\n\n`);
  else res.end();
}

export function htmlEscape(s: string): string {
  const map: Record<string, string> = { '&': '&amp;', "'": '&#39;', '<': '&lt;', '>': '&gt;', '"': '&#34;' };
  return s.replace(/[&'<>"]/g, (c) => map[c] ?? c);
}
