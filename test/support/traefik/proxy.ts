/** The reverse proxy to the service (Go httputil.ReverseProxy with Traefik's Rewrite; spec §4.3 last bullet). */
import type { ServerResponse } from 'node:http';
import { pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { EmulatorContext, ResponseModifier } from './config.ts';
import type { InboundRequest } from './entryPoint.ts';
import { GoHeader, headerValuesContainToken } from './goHeader.ts';
import { type GoURL, parseURL, requestURI } from './goUrl.ts';
import {
  type DialEndpoint,
  dialEndpoint,
  goClientRequest,
  goResponseHeader,
  writeHeaderBlock,
} from './goWire.ts';
import { removeProxyHopHeaders } from './headers.ts';

export function proxyToService(
  ctx: EmulatorContext,
  service: string,
  r: InboundRequest,
  res: ServerResponse,
  modifier: ResponseModifier | undefined,
): void {
  const badGateway = () => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const h = new GoHeader();
    modifier?.(h); // the response modifier also wraps error pages written further down the chain
    writeHeaderBlock(res, 502, h);
    res.end('Bad Gateway');
  };

  // The proxied request uses the client's context: once the client is gone nothing is dialled (499 to nobody).
  if (res.destroyed) return;

  let endpoint: DialEndpoint | undefined;
  let serviceHost = '';
  try {
    const serviceURL = parseURL(service);
    serviceHost = serviceURL.host;
    endpoint = dialEndpoint(serviceURL);
  } catch {
    endpoint = undefined;
  }
  if (endpoint === undefined || serviceHost === '') {
    badGateway();
    return;
  }

  // Outgoing header: hop-by-hop removal, Te: trailers kept, X-Forwarded-For gets the peer appended.
  const h = r.header.clone();
  removeProxyHopHeaders(h);
  if (headerValuesContainToken(r.header.values('Te'), 'trailers')) h.set('Te', 'trailers');
  const prior = h.values('X-Forwarded-For');
  h.set('X-Forwarded-For', prior.length > 0 ? `${prior.join(', ')}, ${r.peerIP}` : r.peerIP);
  if (!h.has('User-Agent')) h.set('User-Agent', ''); // ReverseProxy never sends Go's default UA

  // Path and query come from the (possibly rewritten) request URI; semicolons in the query become '&'.
  const out: GoURL = { ...r.url, rawQuery: r.url.rawQuery.replaceAll(';', '&') };
  const acceptGzip = h.get('Accept-Encoding') === '' && h.get('Range') === '' && r.method !== 'HEAD';
  const upstreamReq = goClientRequest(
    ctx,
    r.method,
    endpoint,
    requestURI(out),
    r.host, // passHostHeader defaults to true
    h,
    acceptGzip,
    r.contentLength,
  );

  upstreamReq.on('error', badGateway);
  upstreamReq.on('response', (upstreamRes) => {
    if (res.destroyed) {
      upstreamRes.destroy();
      return;
    }
    const responseHeader = goResponseHeader(upstreamRes);
    let body: Readable = upstreamRes;
    if (acceptGzip && responseHeader.get('Content-Encoding').toLowerCase() === 'gzip') {
      responseHeader.del('Content-Encoding');
      responseHeader.del('Content-Length');
      body = upstreamRes.pipe(createGunzip());
    }
    removeProxyHopHeaders(responseHeader);
    modifier?.(responseHeader);
    writeHeaderBlock(res, upstreamRes.statusCode ?? 502, responseHeader);
    pipeline(body, res, (err) => {
      if (err) res.destroy();
    });
  });
  res.on('close', () => {
    if (!res.writableFinished) upstreamReq.destroy();
  });

  if (r.contentLength === 0) upstreamReq.end();
  else r.body.pipe(upstreamReq);
}
