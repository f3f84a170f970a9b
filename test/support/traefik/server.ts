/** The emulator's server: startTraefik and the pipeline of spec §1 for every request. */
import { Agent, createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  buildTrustedIPs,
  type EmulatorContext,
  type ResponseModifier,
  resolveRoute,
  type Traefik,
  type TraefikOptions,
} from './config.ts';
import {
  entryPointForwardedHeadersStage,
  entryPointPathStage,
  type InboundRequest,
  readInboundRequest,
} from './entryPoint.ts';
import { forwardAuthStage } from './forwardAuth.ts';
import { writeEmpty, writeGoHttpError, writeGoServerBadRequest } from './goWire.ts';
import { proxyToService } from './proxy.ts';
import { routeMatches, stripPrefixStage } from './routing.ts';
import { proxyUpgrade, responseOnSocket } from './upgrade.ts';

export async function startTraefik(opts: TraefikOptions): Promise<Traefik> {
  const profile = opts.profile ?? 'v3';
  const ctx: EmulatorContext = {
    profile,
    routes: opts.routes.map((route) => resolveRoute(route, profile)),
    trusted: buildTrustedIPs(opts.entryPointTrustedIPs ?? []),
    serverName: opts.serverName ?? 'traefik-emulator',
    authTimeoutMs: opts.authTimeoutMs ?? 30_000,
    agent: new Agent({ keepAlive: true }),
    authCalls: 0,
  };

  // Traefik's default idleTimeout is 180 s; a long server-side idle timeout also avoids keep-alive races in tests.
  const server = createServer({ keepAliveTimeout: 180_000 }, (req, res) => {
    handleRequest(ctx, req, res).catch(() => {
      if (!res.headersSent) writeEmpty(res, 500);
      else res.destroy();
    });
  });
  // WebSocket upgrades take the same pipeline; an allowed one is joined to the service (upgrade.ts).
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgraded.add(socket);
    socket.on('close', () => upgraded.delete(socket));
    socket.on('error', () => socket.destroy());
    const res = responseOnSocket(req, socket);
    const upgrade: ServiceProxy = (service, r, _res, modifier) =>
      proxyUpgrade(service, r, { socket, head, res }, modifier);
    handleRequest(ctx, req, res, upgrade).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('traefik emulator: no port');
  const port = address.port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get authCalls() {
      return ctx.authCalls;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of upgraded) socket.destroy();
      });
      ctx.agent.destroy();
    },
  };
}

/** The last step: to the service (a plain request, or an upgrade's connection). */
type ServiceProxy = (
  service: string,
  r: InboundRequest,
  res: ServerResponse,
  modifier: ResponseModifier | undefined,
) => void;

export async function handleRequest(
  ctx: EmulatorContext,
  req: IncomingMessage,
  res: ServerResponse,
  proxy: ServiceProxy = (service, r, out, modifier) => proxyToService(ctx, service, r, out, modifier),
): Promise<void> {
  const r = readInboundRequest(req);
  if (r === undefined) {
    // Go's server rejects unparseable request targets before any handler runs.
    writeGoServerBadRequest(res);
    return;
  }
  if (!entryPointPathStage(r)) {
    writeEmpty(res, 400);
    return;
  }
  entryPointForwardedHeadersStage(ctx, r);

  const route = ctx.routes.find((candidate) => routeMatches(candidate, r));
  if (route === undefined) {
    writeGoHttpError(res, 404, '404 page not found');
    return;
  }
  if (route.stripPrefix !== undefined && !stripPrefixStage(r, route.stripPrefix)) {
    writeGoHttpError(res, 400, 'Bad Request');
    return;
  }

  let modifier: ResponseModifier | undefined;
  if (route.forwardAuth !== undefined) {
    const outcome = await forwardAuthStage(ctx, route.forwardAuth, r, res);
    if (outcome.done) return;
    modifier = outcome.modifier;
  }
  const service = route.services[route.nextService++ % route.services.length] ?? '';
  proxy(service, r, res, modifier);
}
