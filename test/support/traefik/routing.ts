/** The router (rule parsing and matching) and the stripPrefix middleware (spec §1.3). */
import type { ResolvedRoute } from './config.ts';
import type { InboundRequest } from './entryPoint.ts';
import { netSplitHostPort } from './goHeader.ts';
import { joinPath } from './goUrl.ts';

export function routeMatches(route: ResolvedRoute, r: InboundRequest): boolean {
  if (route.rule !== undefined) {
    return route.rule((netSplitHostPort(r.host)?.host ?? r.host).toLowerCase(), r.url.path);
  }
  if (route.host !== undefined) {
    const hostname = netSplitHostPort(r.host)?.host ?? r.host;
    if (hostname.toLowerCase() !== route.host) return false;
  }
  return r.url.path.startsWith(route.pathPrefix);
}

export type RuleMatcher = (hostname: string, path: string) => boolean;

/**
 * The subset of Traefik's rule language that routers here use (Host, Path, PathPrefix; &&, ||,
 * !, parentheses), matched as Traefik v3 does: Host case-insensitively, Path exactly and
 * PathPrefix by prefix against the (decoded) request path. Anything else is a configuration error.
 */
export function parseRule(rule: string): RuleMatcher {
  const tokens = rule.match(/`[^`]*`|&&|\|\||[!(),]|[A-Za-z]+|\S/g) ?? [];
  let at = 0;
  const fail = (what: string): never => {
    throw new Error(`traefik emulator: ${what} in rule ${JSON.stringify(rule)}`);
  };
  const take = (expected?: string): string => {
    const token = tokens[at++];
    if (token === undefined || (expected !== undefined && token !== expected))
      fail(`expected ${expected ?? 'more'}`);
    return token as string;
  };
  const call = (): RuleMatcher => {
    const name = take();
    take('(');
    const args: string[] = [];
    do {
      const arg = take();
      if (!arg.startsWith('`')) fail(`argument ${arg}`);
      args.push(arg.slice(1, -1));
    } while (tokens[at] === ',' && take(','));
    take(')');
    if (name === 'Host') return (host) => args.some((a) => a.toLowerCase() === host);
    if (name === 'Path') return (_host, path) => args.some((a) => path === a);
    if (name === 'PathPrefix') return (_host, path) => args.some((a) => path.startsWith(a));
    return fail(`matcher ${name}`);
  };
  const unary = (): RuleMatcher => {
    if (tokens[at] === '!') {
      take('!');
      const inner = unary();
      return (h, p) => !inner(h, p);
    }
    if (tokens[at] === '(') {
      take('(');
      const inner = or();
      take(')');
      return inner;
    }
    return call();
  };
  const and = (): RuleMatcher => {
    let left = unary();
    while (tokens[at] === '&&') {
      take('&&');
      const l = left;
      const r = unary();
      left = (h, p) => l(h, p) && r(h, p);
    }
    return left;
  };
  function or(): RuleMatcher {
    let left = and();
    while (tokens[at] === '||') {
      take('||');
      const l = left;
      const r = and();
      left = (h, p) => l(h, p) || r(h, p);
    }
    return left;
  }
  const matcher = or();
  if (at !== tokens.length) fail(`unexpected ${tokens[at]}`);
  return matcher;
}

/** strip_prefix.go ServeHTTP. Returns false when the request is rejected with 400. */
export function stripPrefixStage(r: InboundRequest, prefix: string): boolean {
  if (!r.url.path.startsWith(prefix)) return true;
  const ensureLeadingSlash = (s: string) => (s === '' || s.startsWith('/') ? s : '/' + s);
  r.url.path = ensureLeadingSlash(r.url.path.slice(prefix.length));
  if (r.url.rawPath !== '') {
    // encodedPrefixLen: advance 3 bytes per %XX and 1 otherwise, once per decoded prefix byte.
    let i = 0;
    for (let decoded = 0; i < r.url.rawPath.length && decoded < prefix.length; decoded++) {
      i += r.url.rawPath[i] === '%' && i + 2 < r.url.rawPath.length ? 3 : 1;
    }
    r.url.rawPath = ensureLeadingSlash(r.url.rawPath.slice(i));
  }
  const stripped = r.url.path;
  if (stripped !== '') r.url = joinPath(r.url);
  if (stripped !== r.url.path) return false;
  r.header.add('X-Forwarded-Prefix', prefix);
  return true;
}
