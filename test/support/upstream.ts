/**
 * A recording "backend" on 127.0.0.1 for proxy tests: answers every request
 * 200 with a JSON echo of what it received (or serves a handler of its own, unrecorded), and
 * accepts WebSocket upgrades (recorded too), greeting each with one text message.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

/** What the upstream says first on every WebSocket it accepts. */
export const WEBSOCKET_GREETING = 'welcome from the upstream';

/** RFC 6455 §4.2.2: the 101 answer, then one unmasked text frame (FIN, opcode 1, length < 126). */
function acceptWebSocket(req: IncomingMessage, socket: Duplex): void {
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  const text = Buffer.from(WEBSOCKET_GREETING);
  socket.write(Buffer.concat([Buffer.from([0x81, text.length]), text]));
  socket.on('error', () => socket.destroy());
  // The client's frames are read and dropped; its close frame (opcode 8) is answered and the connection ended.
  socket.on('data', (frame: Buffer) => {
    if (((frame[0] ?? 0) & 0x0f) === 8) socket.end(Buffer.from([0x88, 0]));
  });
}

export interface RecordedRequest {
  method: string;
  url: string;
  /** rawHeaders as [name, value] pairs, in arrival order, duplicates kept. */
  headers: [string, string][];
  host: string | undefined;
}

export interface Upstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** All values of header `name` (case-insensitive) in a recorded request. */
export function headerValues(req: Pick<RecordedRequest, 'headers'>, name: string): string[] {
  const lower = name.toLowerCase();
  return req.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

function pairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function record(req: IncomingMessage): RecordedRequest {
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    headers: pairs(req.rawHeaders),
    host: req.headers.host,
  };
}

/**
 * The echoing upstream on a free loopback port; with `handler`, that answers instead (the demo's
 * dashboard) and nothing is recorded.
 */
export async function startUpstream(handler?: RequestListener): Promise<Upstream> {
  const requests: RecordedRequest[] = [];
  const server = createServer(
    handler ??
      ((req, res) => {
        const entry = record(req);
        requests.push(entry);
        req.resume(); // drain any body so keep-alive connections stay usable
        req.on('end', () => {
          const body = JSON.stringify(entry);
          const path = entry.url.split('?')[0];
          if (path === '/set-backend-cookie') res.setHeader('Set-Cookie', 'backend=1; Path=/');
          res.writeHead(200, {
            'Content-Type': 'application/json; charset=utf-8',
            'Content-Length': Buffer.byteLength(body),
          });
          res.end(body);
        });
      }),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    if (!handler) requests.push(record(req));
    acceptWebSocket(req, socket);
  });
  const { port } = server.address() as AddressInfo;
  let closed = false;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      for (const socket of upgraded) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
