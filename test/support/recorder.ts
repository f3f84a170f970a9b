/**
 * A transparent HTTP hop on loopback that records what passes: put in front of a listener of the
 * service (its pages port, its decision port) to see which requests a proxy sent where. Request
 * and response go through unchanged (method, target, headers, body, status).
 */
import { createServer, request } from 'node:http';
import { pipeline } from 'node:stream';
import { LOOPBACK } from './redis.ts';

export interface Recorded {
  readonly method: string;
  /** The request target as received. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface Recorder {
  /** Where to send requests instead of `target`. */
  readonly url: string;
  readonly requests: Recorded[];
  close(): Promise<void>;
}

export async function startRecorder(target: string): Promise<Recorder> {
  const to = new URL(target);
  if (to.hostname !== LOOPBACK) throw new Error(`recorder: ${target} is not on ${LOOPBACK}`);
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    const out = request(
      { host: LOOPBACK, port: to.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        pipeline(answer, res, () => {});
      },
    );
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    pipeline(req, out, () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('recorder: no port');
  return {
    url: `http://${LOOPBACK}:${address.port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
