/** The entry point (spec §1.1, §1.2, checklist items 1-4): Go's request parsing, path handling, forwarded headers. */
import type { IncomingMessage } from 'node:http';
import { type EmulatorContext, isTrustedPeer } from './config.ts';
import {
  canonicalHeaderKey,
  GoHeader,
  headerValuesContainToken,
  netSplitHostPort,
  trimOWS,
} from './goHeader.ts';
import { type GoURL, joinPath, parseRequestURI } from './goUrl.ts';
import { deleteManagedXHeaders, isManagedXHeader } from './headers.ts';

/** Go's *http.Request as Traefik's handlers see it. */
export interface InboundRequest {
  method: string;
  /** req.Host: the Host header (or the host of an absolute-form target). */
  host: string;
  url: GoURL;
  header: GoHeader;
  peerIP: string;
  /** -1 = unknown (chunked). */
  contentLength: number;
  body: IncomingMessage;
}

/** What Go's HTTP server does before handing the request to Traefik (net/http readRequest / readTransfer). */
export function readInboundRequest(req: IncomingMessage): InboundRequest | undefined {
  let url: GoURL;
  try {
    url = parseRequestURI(req.url ?? '');
  } catch {
    return undefined;
  }
  const header = GoHeader.fromRaw(req.rawHeaders);
  const host = url.host !== '' ? url.host : header.get('Host');
  header.del('Host');
  // fixPragmaCacheControl
  if (header.values('Pragma')[0] === 'no-cache' && !header.has('Cache-Control'))
    header.set('Cache-Control', 'no-cache');
  // readTransfer: Transfer-Encoding leaves the map; with chunking, Content-Length and Trailer go too.
  const chunked = header.has('Transfer-Encoding');
  header.del('Transfer-Encoding');
  let contentLength = 0;
  if (chunked) {
    header.del('Content-Length');
    header.del('Trailer');
    contentLength = -1;
  } else if (header.has('Content-Length')) {
    contentLength = Number(header.get('Content-Length'));
  }
  return {
    method: req.method ?? 'GET',
    host,
    url,
    header,
    peerIP: req.socket.remoteAddress ?? '',
    contentLength,
    body: req,
  };
}

/**
 * Entry-point path handling, in Traefik's wrapping order: denyFragment → normalizePath → sanitizePath
 * (spec §1.2). Returns false when the request is rejected with 400.
 */
export function entryPointPathStage(r: InboundRequest): boolean {
  if (r.url.rawPath.includes('#')) return false;

  // normalizePath: decode percent-encoded unreserved characters, upper-case the other escapes (RawPath only).
  const rawPath = r.url.rawPath;
  if (rawPath !== '') {
    let normalized = '';
    for (let i = 0; i < rawPath.length; i++) {
      if (rawPath[i] !== '%') {
        normalized += rawPath[i];
        continue;
      }
      if (i + 2 >= rawPath.length) return false;
      const encoded = rawPath.slice(i, i + 3).toUpperCase();
      const decoded = String.fromCharCode(Number.parseInt(encoded.slice(1), 16));
      normalized += /^[A-Za-z0-9\-._~]$/.test(decoded) ? decoded : encoded;
      i += 2;
    }
    r.url.rawPath = normalized;
  }

  // sanitizePath (on by default): URL.JoinPath() collapses dot segments and duplicate slashes.
  r.url = joinPath(r.url);
  return true;
}

/** forwarded_header.go ServeHTTP: strip (untrusted peers), rewrite, then apply the Connection header. */
export function entryPointForwardedHeadersStage(ctx: EmulatorContext, r: InboundRequest): void {
  const h = r.header;
  if (!isTrustedPeer(ctx, r.peerIP)) deleteManagedXHeaders(h);

  // rewrite(): each value is only filled in when absent, except X-Forwarded-Server.
  if (h.get('X-Real-Ip') === '') h.set('X-Real-Ip', r.peerIP.split('%')[0] ?? r.peerIP);
  if (h.get('X-Forwarded-Proto') === '') h.set('X-Forwarded-Proto', isWebsocketRequest(h) ? 'ws' : 'http');
  if (h.get('X-Forwarded-Port') === '')
    h.set('X-Forwarded-Port', forwardedPort(r.host, h.get('X-Forwarded-Proto')));
  if (h.get('X-Forwarded-Host') === '' && r.host !== '') h.set('X-Forwarded-Host', r.host);
  const xff = h.values('X-Forwarded-For');
  if (xff.length > 0) h.set('X-Forwarded-For', xff.join(', ')); // folded; the peer is NOT appended here
  h.set('X-Forwarded-Server', ctx.serverName);

  // removeConnectionHeaders: Connection-listed names go, except managed X-headers; Upgrade survives.
  const upgradeType = headerValuesContainToken(h.values('Connection'), 'upgrade') ? h.get('Upgrade') : '';
  for (const value of h.values('Connection')) {
    for (const token of value.split(',')) {
      const name = trimOWS(token);
      if (name !== '' && !isManagedXHeader(canonicalHeaderKey(name))) h.deleteKey(canonicalHeaderKey(name));
    }
  }
  if (upgradeType !== '') {
    h.set('Upgrade', upgradeType);
    h.set('Connection', 'Upgrade');
  } else {
    h.del('Connection');
  }
}

export function isWebsocketRequest(h: GoHeader): boolean {
  const contains = (name: string, value: string) =>
    h
      .get(name)
      .split(',')
      .some((part) => part.trim().toLowerCase() === value);
  return contains('Connection', 'upgrade') && contains('Upgrade', 'websocket');
}

/** The port in Host, else 443 for https/wss, else 80 (no TLS entry points are modelled). */
export function forwardedPort(host: string, proto: string): string {
  const port = netSplitHostPort(host)?.port ?? '';
  if (port !== '') return port;
  return proto === 'https' || proto === 'wss' ? '443' : '80';
}
