/**
 * The shipped Traefik configurations — the overlays' IngressRoutes and Middleware, and
 * deploy/traefik/dynamic.yml — as routes for the Traefik emulator: every router with its rule as
 * written (only the hosts moved from example.com to localhost, which browsers and the test
 * client resolve to loopback), its forward-auth options as shipped (only the address moved to
 * the test's decision listener) and its service (the service's pages port, or the dashboard).
 * Routers are ordered as Traefik orders them: by priority, which defaults to the rule's length.
 * Not modelled: TLS (entry points, ServersTransport, the Middleware's tls for mutual TLS).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { Any, Obj } from './manifests.ts';
import type { Route } from './traefik.ts';

export interface Backends {
  /** The service's pages listener (PORT). */
  readonly pages: string;
  /** Its decision listener (AUTH_PORT). */
  readonly decision: string;
  /** Every other service: the dashboards. */
  readonly dashboard: string;
}

/** grafana.mgmt.example.com → grafana.mgmt.localhost. */
export const loopbackHost = (host: string): string => host.replace(/(^|\.)example\.com$/, '$1localhost');

const mapHosts = (rule: string): string =>
  rule.replace(/Host\(`([^`]+)`\)/g, (_, host: string) => `Host(\`${loopbackHost(host)}\`)`);

/** The hosts a rule names (after mapping). */
export const ruleHosts = (rule: string): string[] =>
  [...mapHosts(rule).matchAll(/Host\(`([^`]+)`\)/g)].map((m) => m[1] as string);

function byPriority(routes: (Route & { priority?: number })[]): Route[] {
  const priority = (r: Route & { priority?: number }) => r.priority ?? (r.rule as string).length;
  return [...routes].sort((a, b) => priority(b) - priority(a));
}

/** Where a Middleware's address points: the Service and port it names must be the decision port. */
function decisionAddress(address: string, objs: Obj[], backends: Backends): string {
  const url = new URL(address);
  const [name, namespace] = url.hostname.split('.');
  const service = objs.find((o) => o.kind === 'Service' && o.metadata.name === name) as Any;
  if (!service || service.metadata.namespace !== namespace) throw new Error(`${address}: no such Service`);
  const port = service.spec.ports.find((p: Any) => p.port === Number(url.port));
  if (port?.name !== 'auth') throw new Error(`${address}: not the Service's decision port`);
  return `${backends.decision}${url.pathname}`;
}

/** The IngressRoutes of a rendered overlay as emulator routes. */
export function ingressRouteRoutes(objs: Obj[], backends: Backends): Route[] {
  const routes: Route[] = [];
  for (const ir of objs.filter((o) => o.kind === 'IngressRoute') as Any[]) {
    for (const r of ir.spec.routes) {
      const refs = (r.middlewares ?? []) as { name: string; namespace?: string }[];
      if (refs.length > 1) throw new Error(`${ir.metadata.name}: more than one middleware is not modelled`);
      const route: Route & { priority?: number } = { rule: mapHosts(r.match), service: backends.dashboard };
      if (r.priority !== undefined) route.priority = r.priority;
      for (const ref of refs) {
        const mw = objs.find(
          (o) =>
            o.kind === 'Middleware' &&
            o.metadata.name === ref.name &&
            o.metadata.namespace === (ref.namespace ?? ir.metadata.namespace),
        ) as Any;
        if (!mw) throw new Error(`${ir.metadata.name}: middleware ${ref.name} not found`);
        const { tls: _tls, ...forwardAuth } = mw.spec.forwardAuth;
        route.forwardAuth = { ...forwardAuth, address: decisionAddress(forwardAuth.address, objs, backends) };
      }
      const target = r.services[0];
      if (target.name === 'dex-forward-auth') {
        const service = objs.find(
          (o) => o.kind === 'Service' && o.metadata.name === 'dex-forward-auth',
        ) as Any;
        if (service.spec.ports.find((p: Any) => p.port === target.port)?.name !== 'http')
          throw new Error(`${ir.metadata.name}: dex-forward-auth:${target.port} is not the pages port`);
        route.service = backends.pages;
      }
      routes.push(route);
    }
  }
  return byPriority(routes);
}

/** deploy/traefik/dynamic.yml as emulator routes (127.0.0.1:4180/4181 stand for the service's ports). */
export function dynamicFileRoutes(backends: Backends): Route[] {
  const http = parseYaml(
    readFileSync(new URL('../../deploy/traefik/dynamic.yml', import.meta.url), 'utf8'),
  ).http;
  const routes: Route[] = [];
  for (const router of Object.values(http.routers) as Any[]) {
    const route: Route & { priority?: number } = { rule: mapHosts(router.rule), service: backends.dashboard };
    if (router.priority !== undefined) route.priority = router.priority;
    for (const name of router.middlewares ?? []) {
      const fa = http.middlewares[name].forwardAuth;
      const url = new URL(fa.address);
      if (url.host !== '127.0.0.1:4181') throw new Error(`${name}: not the decision port`);
      route.forwardAuth = { ...fa, address: `${backends.decision}${url.pathname}` };
    }
    const server = http.services[router.service].loadBalancer.servers[0].url as string;
    if (new URL(server).host === '127.0.0.1:4180') route.service = backends.pages;
    routes.push(route);
  }
  return byPriority(routes);
}
