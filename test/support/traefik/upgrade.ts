/**
 * WebSocket upgrades through the emulator (Go httputil.ReverseProxy's upgrade handling, as
 * Traefik runs it): the entry point and the middlewares as for any request — the forward-auth
 * call carries no Upgrade or Connection (hop-by-hop, spec §3.2 step 2) but X-Forwarded-Proto is
 * `ws` — and, once allowed, the request goes to the service with `Connection: Upgrade` and
 * `Upgrade: <type>` put back; a 101 answer is relayed with its headers (after the response
 * modifier) and the two connections are joined. A non-2xx auth answer is written on the client's
 * connection, which is then closed: no upgrade.
 */
import { request as httpRequest, type IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ResponseModifier } from './config.ts';
import type { InboundRequest } from './entryPoint.ts';
import { GoHeader, headerValuesContainToken } from './goHeader.ts';
import { parseURL, requestURI } from './goUrl.ts';
import { dialEndpoint, writeEmpty } from './goWire.ts';
import { removeProxyHopHeaders } from './headers.ts';

/** The upgrade's protocol when the request asks for one (Connection: upgrade + Upgrade), else ''. */
export function upgradeType(h: GoHeader): string {
  return headerValuesContainToken(h.values('Connection'), 'upgrade') ? h.get('Upgrade') : '';
}

/** A ServerResponse on the upgrade's socket, for the stages that answer by themselves. */
export function responseOnSocket(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Parameters<ServerResponse['assignSocket']>[0]);
  res.on('finish', () => socket.end());
  return res;
}

function statusLine(status: number, message: string | undefined, header: GoHeader): string {
  const lines = [`HTTP/1.1 ${status} ${message ?? ''}`];
  for (const [key, values] of header.sortedEntries()) for (const v of values) lines.push(`${key}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** The allowed upgrade, proxied to `service` (Go: ReverseProxy.ServeHTTP → handleUpgradeResponse). */
export function proxyUpgrade(
  service: string,
  r: InboundRequest,
  client: { socket: Duplex; head: Buffer; res: ServerResponse },
  modifier: ResponseModifier | undefined,
): void {
  const endpoint = (() => {
    try {
      return dialEndpoint(parseURL(service));
    } catch {
      return undefined;
    }
  })();
  if (endpoint === undefined) {
    writeEmpty(client.res, 502);
    return;
  }
  const type = upgradeType(r.header);
  const h = r.header.clone();
  removeProxyHopHeaders(h);
  if (type !== '') {
    h.set('Connection', 'Upgrade');
    h.set('Upgrade', type);
  }
  const prior = h.values('X-Forwarded-For');
  h.set('X-Forwarded-For', prior.length > 0 ? `${prior.join(', ')}, ${r.peerIP}` : r.peerIP);
  const headers: Record<string, string | string[]> = { Host: r.host };
  for (const [key, values] of h.sortedEntries()) headers[key] = values.length === 1 ? values[0]! : values;
  const out = httpRequest({
    host: endpoint.hostname,
    port: endpoint.port,
    method: r.method,
    path: requestURI(r.url),
    headers,
    setHost: false,
    agent: false,
  });
  out.on('error', () => {
    if (!client.res.headersSent) writeEmpty(client.res, 502);
    else client.socket.destroy();
  });
  out.on('response', (answer) => {
    // No switch: relayed as an ordinary answer, and the connection closed.
    const header = GoHeader.fromRaw(answer.rawHeaders);
    removeProxyHopHeaders(header);
    modifier?.(header);
    for (const [key, values] of header.sortedEntries()) client.res.setHeader(key, values);
    client.res.statusCode = answer.statusCode ?? 502;
    answer.pipe(client.res);
  });
  out.on('upgrade', (answer, upstream, upstreamHead) => {
    const header = GoHeader.fromRaw(answer.rawHeaders);
    modifier?.(header);
    client.socket.write(statusLine(101, answer.statusMessage, header));
    if (upstreamHead.length > 0) client.socket.write(upstreamHead);
    if (client.head.length > 0) upstream.write(client.head);
    upstream.pipe(client.socket);
    client.socket.pipe(upstream);
    const close = () => {
      upstream.destroy();
      client.socket.destroy();
    };
    upstream.on('error', close);
    client.socket.on('error', close);
    upstream.on('close', close);
    client.socket.on('close', close);
  });
  out.end();
}
