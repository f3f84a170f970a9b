/**
 * The emulator's options (the public API) and their resolved form: profiles, trust modes, the
 * ForwardAuth options as forward.go NewForward reads them, trusted entry-point peers.
 */
import type { Agent } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { GoHeader } from './goHeader.ts';
import { MANAGED_X_HEADERS } from './headers.ts';
import { parseRule, type RuleMatcher } from './routing.ts';

export interface ForwardAuthOptions {
  /** Auth URL(s); several = round-robin per request (models several replicas behind a Service). */
  address: string | string[];
  /** undefined = mode L (legacy), false = mode F, true = mode T (v3.6.14+ semantics), spec §3.3. */
  trustForwardHeader?: boolean;
  authRequestHeaders?: string[];
  authResponseHeaders?: string[];
  /** Go RE2-ish: JS RegExp, case-sensitive, unanchored, matched against Go-canonical names. A leading `(?i)` is honoured. */
  authResponseHeadersRegex?: string;
  addAuthCookiesToResponse?: string[];
  preserveLocationHeader?: boolean;
  preserveRequestMethod?: boolean;
  maxResponseBodySize?: number;
  authSigninURL?: string;
}

export interface Route {
  /**
   * A Traefik rule, as routers and IngressRoutes write it: Host, Path and PathPrefix with backtick
   * arguments, combined with &&, ||, ! and parentheses. When given, `host` and `pathPrefix` are not used.
   */
  rule?: string;
  /** Exact Host match (without port, case-insensitive); undefined = any host. */
  host?: string;
  /** Default '/'. Matched against the decoded path, as Traefik's PathPrefix matcher does. */
  pathPrefix?: string;
  /** Optional stripPrefix middleware before forwardAuth (adds X-Forwarded-Prefix). */
  stripPrefix?: string;
  /** undefined = no auth (a direct route, e.g. PathPrefix(/oauth2) to the auth service). */
  forwardAuth?: ForwardAuthOptions;
  /**
   * Upstream base URL, e.g. http://127.0.0.1:1234 (its path is ignored, as Traefik does without
   * preservePath); several = round-robin per request (a Service with several endpoints).
   */
  service: string | string[];
}

export interface TraefikOptions {
  /** First match wins; longest pathPrefix should be listed first by the caller. */
  routes: Route[];
  /** Default 'v3' (3.6.24/3.7.x behaviour); 'v2' = v2.11.53. */
  profile?: 'v3' | 'v2';
  /** Peers (IPs or CIDRs) whose X-Forwarded-* survive the entry point. Default none; tests connect from 127.0.0.1. */
  entryPointTrustedIPs?: string[];
  /** X-Forwarded-Server value, default 'traefik-emulator'. */
  serverName?: string;
  /** Listen on this port instead of a free one. */
  port?: number;
  /** Overall auth-call timeout. Traefik's is a fixed 30 s (spec §3.7); lowering it is a test hook only. */
  authTimeoutMs?: number;
}

export interface Traefik {
  url: string;
  port: number;
  close(): Promise<void>;
  /** Number of auth requests made so far (successful or not). */
  authCalls: number;
}

export type Profile = 'v3' | 'v2';
/** Spec §3.3: L = trustForwardHeader unset (legacy), F = explicit false, T = explicit true. */
export type TrustMode = 'L' | 'F' | 'T';

export interface EmulatorContext {
  profile: Profile;
  routes: ResolvedRoute[];
  trusted: BlockList;
  serverName: string;
  authTimeoutMs: number;
  agent: Agent;
  authCalls: number;
}

export interface ResolvedRoute {
  rule: RuleMatcher | undefined;
  host: string | undefined;
  pathPrefix: string;
  stripPrefix: string | undefined;
  forwardAuth: ResolvedForwardAuth | undefined;
  services: string[];
  nextService: number;
}

export interface ResolvedForwardAuth {
  addresses: string[];
  nextAddress: number;
  mode: TrustMode;
  authRequestHeaders: string[];
  authResponseHeaders: string[];
  authResponseHeadersRegex: RegExp | undefined;
  addAuthCookiesToResponse: Set<string>;
  preserveLocationHeader: boolean;
  preserveRequestMethod: boolean;
  /** -1 = no limit. */
  maxResponseBodySize: number;
  authSigninURL: string;
}

export function resolveRoute(route: Route, profile: Profile): ResolvedRoute {
  return {
    rule: route.rule === undefined ? undefined : parseRule(route.rule),
    host: route.host?.toLowerCase(),
    pathPrefix: toBinary(route.pathPrefix ?? '/'),
    stripPrefix: route.stripPrefix === undefined ? undefined : toBinary(route.stripPrefix.trim()),
    forwardAuth: route.forwardAuth === undefined ? undefined : resolveForwardAuth(route.forwardAuth, profile),
    services: Array.isArray(route.service) ? route.service : [route.service],
    nextService: 0,
  };
}

export function resolveForwardAuth(fa: ForwardAuthOptions, profile: Profile): ResolvedForwardAuth {
  const addresses = (Array.isArray(fa.address) ? fa.address : [fa.address]).map(toBinary);
  if (addresses.length === 0) throw new Error('forwardAuth: address is required');
  if (profile === 'v2') {
    // Spec §2 "since" column: these options do not exist on the v2 line.
    const v3Only = [
      ['addAuthCookiesToResponse', fa.addAuthCookiesToResponse],
      ['preserveLocationHeader', fa.preserveLocationHeader],
      ['preserveRequestMethod', fa.preserveRequestMethod],
      ['authSigninURL', fa.authSigninURL],
    ] as const;
    for (const [name, value] of v3Only) {
      if (value !== undefined) throw new Error(`forwardAuth.${name} is not available in the v2 profile`);
    }
  }
  const mode: TrustMode = fa.trustForwardHeader === undefined ? 'L' : fa.trustForwardHeader ? 'T' : 'F';
  const authRequestHeaders = [...(fa.authRequestHeaders ?? [])];
  // forward.go NewForward: in mode T a non-empty allow-list always lets the managed X-headers through (§3.3).
  if (mode === 'T' && authRequestHeaders.length > 0) authRequestHeaders.push(...MANAGED_X_HEADERS);
  return {
    addresses,
    nextAddress: 0,
    mode,
    authRequestHeaders,
    authResponseHeaders: fa.authResponseHeaders ?? [],
    authResponseHeadersRegex:
      fa.authResponseHeadersRegex === undefined || fa.authResponseHeadersRegex === ''
        ? undefined
        : compileGoRegex(fa.authResponseHeadersRegex),
    addAuthCookiesToResponse: new Set(fa.addAuthCookiesToResponse ?? []),
    preserveLocationHeader: fa.preserveLocationHeader ?? false,
    preserveRequestMethod: fa.preserveRequestMethod ?? false,
    maxResponseBodySize: fa.maxResponseBodySize ?? -1,
    authSigninURL: toBinary(fa.authSigninURL ?? ''),
  };
}

/** RE2 accepts a leading flag group such as `(?i)`; JS needs it as a RegExp flag. */
export function compileGoRegex(source: string): RegExp {
  const flagGroup = /^\(\?([imsU]+)\)/.exec(source);
  let flags = '';
  for (const flag of flagGroup?.[1] ?? '') if ('ims'.includes(flag) && !flags.includes(flag)) flags += flag;
  return new RegExp(flagGroup ? source.slice(flagGroup[0].length) : source, flags);
}

export function buildTrustedIPs(entries: string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [ip = '', prefix] = entry.split('/');
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(ip, type);
    else list.addSubnet(ip, Number(prefix), type);
  }
  return list;
}

export function isTrustedPeer(ctx: EmulatorContext, ip: string): boolean {
  return isIP(ip) !== 0 && ctx.trusted.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
}

/** Go strings are bytes; Node hands us header values as latin1, so config strings are converted the same way. */
export function toBinary(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

export type ResponseModifier = (header: GoHeader) => void;
