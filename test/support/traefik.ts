/**
 * Traefik ForwardAuth emulator for tests.
 *
 * Real Traefik cannot be installed here, so this module reproduces the behaviour described in
 * /work/shared/spec/traefik-forwardauth.md ("spec"), cross-checked against the Traefik sources it cites
 * (`forward.go`, `forwarded_header.go`, `response_modifier.go`, `strip_prefix.go`, the entry point's path
 * handling and `pkg/proxy/httputil`). Profiles:
 *   - 'v3' (default): Traefik v3.6.24 / v3.7.9.
 *   - 'v2': Traefik v2.11.53 (the last v2.11 release in the snapshot, which also has the tri-state
 *     `trustForwardHeader`). Note: the spec says path sanitising/normalising is v3-only, but the v2.11 line got
 *     both backported (sanitizePath in v2.11.23, normalizePath in v2.11.25), so this profile applies them too.
 *
 * Pipeline for every request (spec §1):
 *   Go server parsing → entry point (path normalise/sanitise, forwarded headers) → router → stripPrefix →
 *   forwardAuth → reverse proxy to the service (Go's httputil.ReverseProxy as configured by Traefik).
 *
 * Go semantics that matter are emulated rather than approximated with Node's defaults: header maps keyed by
 * Go-canonical names with every value kept (built from `rawHeaders`), Go's URL parsing/escaping (for
 * X-Forwarded-Uri and Location), Go's Set-Cookie parser and serialiser, Go's client artefacts (User-Agent,
 * Accept-Encoding: gzip with transparent gunzip, no Connection header).
 *
 * Not modelled:
 *   - `forwardBody` / `maxBodySize` (spec §3.6): the auth request never carries a body;
 *   - TLS (entry point or `https://` auth/service addresses), HTTP/2, WebSocket upgrades, CONNECT, trailers;
 *   - `headerField` (access log only), tracing, `tls.*` options, `HTTP_PROXY` environment variables;
 *   - mode "T-old" (`trustForwardHeader: true` before v3.6.14 / v2.11.43) and other older-version behaviour;
 *   - raw non-ASCII bytes in the request target (Node's HTTP parser rejects them before the emulator sees them);
 *   - several Cookie header lines to the auth server/upstream are joined with "; " by Node's client, where Go
 *     sends separate lines (a Node server sees the same `req.headers.cookie` either way).
 * Only loopback hosts are ever dialled; any other host in an address is treated as unreachable.
 */
import {
  Agent,
  type ClientRequest,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { BlockList, isIP } from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';

// ---------------------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------------------

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
      });
      ctx.agent.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

type Profile = 'v3' | 'v2';
/** Spec §3.3: L = trustForwardHeader unset (legacy), F = explicit false, T = explicit true. */
type TrustMode = 'L' | 'F' | 'T';

interface EmulatorContext {
  profile: Profile;
  routes: ResolvedRoute[];
  trusted: BlockList;
  serverName: string;
  authTimeoutMs: number;
  agent: Agent;
  authCalls: number;
}

interface ResolvedRoute {
  rule: RuleMatcher | undefined;
  host: string | undefined;
  pathPrefix: string;
  stripPrefix: string | undefined;
  forwardAuth: ResolvedForwardAuth | undefined;
  services: string[];
  nextService: number;
}

interface ResolvedForwardAuth {
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

function resolveRoute(route: Route, profile: Profile): ResolvedRoute {
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

function resolveForwardAuth(fa: ForwardAuthOptions, profile: Profile): ResolvedForwardAuth {
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
function compileGoRegex(source: string): RegExp {
  const flagGroup = /^\(\?([imsU]+)\)/.exec(source);
  let flags = '';
  for (const flag of flagGroup?.[1] ?? '') if ('ims'.includes(flag) && !flags.includes(flag)) flags += flag;
  return new RegExp(flagGroup ? source.slice(flagGroup[0].length) : source, flags);
}

function buildTrustedIPs(entries: string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [ip = '', prefix] = entry.split('/');
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(ip, type);
    else list.addSubnet(ip, Number(prefix), type);
  }
  return list;
}

function isTrustedPeer(ctx: EmulatorContext, ip: string): boolean {
  return isIP(ip) !== 0 && ctx.trusted.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
}

/** Go strings are bytes; Node hands us header values as latin1, so config strings are converted the same way. */
function toBinary(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

// ---------------------------------------------------------------------------------------------------------
// Request handling: the pipeline of spec §1
// ---------------------------------------------------------------------------------------------------------

/** Go's *http.Request as Traefik's handlers see it. */
interface InboundRequest {
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

type ResponseModifier = (header: GoHeader) => void;

async function handleRequest(ctx: EmulatorContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
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
  proxyToService(ctx, service, r, res, modifier);
}

/** What Go's HTTP server does before handing the request to Traefik (net/http readRequest / readTransfer). */
function readInboundRequest(req: IncomingMessage): InboundRequest | undefined {
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

// ---------------------------------------------------------------------------------------------------------
// Entry point (spec §1.1, §1.2, checklist items 1-4)
// ---------------------------------------------------------------------------------------------------------

/** Traefik-managed X-headers (forwarded_header.go XHeadersSet at v3.7.9 / v3.6.24 / v2.11.53). */
const MANAGED_X_HEADERS = [
  'X-Forwarded-Proto',
  'X-Forwarded-For',
  'X-Forwarded-Host',
  'X-Forwarded-Port',
  'X-Forwarded-Server',
  'X-Forwarded-Uri',
  'X-Forwarded-Method',
  'X-Forwarded-Prefix',
  'X-Forwarded-Tls-Client-Cert',
  'X-Forwarded-Tls-Client-Cert-Info',
  'X-Real-Ip',
];
const MANAGED_X_HEADER_SET = new Set(MANAGED_X_HEADERS);

/** isManagedXHeader: canonical managed names and their underscore spellings such as `X_Forwarded_For`. */
function isManagedXHeader(key: string): boolean {
  if (!key.startsWith('X')) return false;
  if (MANAGED_X_HEADER_SET.has(key)) return true;
  if (!key.includes('_')) return false;
  return MANAGED_X_HEADER_SET.has(canonicalHeaderKey(key.replaceAll('_', '-')));
}

/** DeleteXForwardedHeaders. */
function deleteManagedXHeaders(header: GoHeader): void {
  for (const key of header.keys()) if (isManagedXHeader(key)) header.deleteKey(key);
}

/**
 * Entry-point path handling, in Traefik's wrapping order: denyFragment → normalizePath → sanitizePath
 * (spec §1.2). Returns false when the request is rejected with 400.
 */
function entryPointPathStage(r: InboundRequest): boolean {
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
function entryPointForwardedHeadersStage(ctx: EmulatorContext, r: InboundRequest): void {
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

function isWebsocketRequest(h: GoHeader): boolean {
  const contains = (name: string, value: string) =>
    h
      .get(name)
      .split(',')
      .some((part) => part.trim().toLowerCase() === value);
  return contains('Connection', 'upgrade') && contains('Upgrade', 'websocket');
}

/** The port in Host, else 443 for https/wss, else 80 (no TLS entry points are modelled). */
function forwardedPort(host: string, proto: string): string {
  const port = netSplitHostPort(host)?.port ?? '';
  if (port !== '') return port;
  return proto === 'https' || proto === 'wss' ? '443' : '80';
}

// ---------------------------------------------------------------------------------------------------------
// Router and stripPrefix (spec §1.3)
// ---------------------------------------------------------------------------------------------------------

function routeMatches(route: ResolvedRoute, r: InboundRequest): boolean {
  if (route.rule !== undefined) {
    return route.rule((netSplitHostPort(r.host)?.host ?? r.host).toLowerCase(), r.url.path);
  }
  if (route.host !== undefined) {
    const hostname = netSplitHostPort(r.host)?.host ?? r.host;
    if (hostname.toLowerCase() !== route.host) return false;
  }
  return r.url.path.startsWith(route.pathPrefix);
}

type RuleMatcher = (hostname: string, path: string) => boolean;

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
function stripPrefixStage(r: InboundRequest, prefix: string): boolean {
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

// ---------------------------------------------------------------------------------------------------------
// ForwardAuth (spec §3 and §4)
// ---------------------------------------------------------------------------------------------------------

type ForwardAuthOutcome = { done: true } | { done: false; modifier: ResponseModifier | undefined };

async function forwardAuthStage(
  ctx: EmulatorContext,
  fa: ResolvedForwardAuth,
  r: InboundRequest,
  res: ServerResponse,
): Promise<ForwardAuthOutcome> {
  const address = fa.addresses[fa.nextAddress++ % fa.addresses.length] ?? '';
  const method = fa.preserveRequestMethod ? r.method : 'GET'; // §3.1

  let target: GoURL;
  try {
    target = parseURL(address); // http.NewRequest: a malformed address gives 500 on every request (§4)
  } catch {
    writeEmpty(res, 500);
    return { done: true };
  }

  const header = buildAuthRequestHeader(ctx.profile, fa, r);
  const response = await sendAuthRequest(ctx, method, target, header, res);
  return handleAuthResponse(ctx.profile, fa, target, r, res, response);
}

/** Spec §3.2 steps 1-6 (forward.go writeHeader / oldWriteHeader). */
function buildAuthRequestHeader(profile: Profile, fa: ResolvedForwardAuth, r: InboundRequest): GoHeader {
  // 1. Copy every incoming header with all values.
  let h = r.header.clone();

  // 2. Connection-listed headers, then the fixed hop-by-hop list (Proxy-Authorization is kept).
  removeConnectionListedHeaders(h);
  for (const name of AUTH_HOP_HEADERS) h.del(name);

  // 3. Mode F deletes every managed X-header (and underscore spellings).
  if (fa.mode === 'F') deleteManagedXHeaders(h);

  // 4. User-Agent (§3.5): v3.6.9+ blanks it in modes F/T when the client sent none.
  if (profile === 'v3' && fa.mode !== 'L' && !r.header.has('User-Agent')) h.set('User-Agent', '');

  // 5. authRequestHeaders allow-list (case-insensitive, all values), before the computed headers.
  if (fa.authRequestHeaders.length > 0) {
    const filtered = new GoHeader();
    for (const name of fa.authRequestHeaders) {
      const values = h.values(name);
      if (values.length > 0) filtered.setValues(name, values);
    }
    h = filtered;
  }

  // 6. X-Forwarded-* per the §3.3 table.
  const requestURIValue = requestURI(r.url);
  if (fa.mode === 'L') {
    h.set('X-Forwarded-For', r.peerIP);
    h.set('X-Forwarded-Proto', 'http');
    h.set('X-Forwarded-Method', r.method);
    h.set('X-Forwarded-Host', r.host);
    h.set('X-Forwarded-Uri', requestURIValue);
    return h; // X-Forwarded-Port, X-Real-Ip, X-Forwarded-Server, X-Forwarded-Prefix pass as copied headers
  }
  const prior = h.values('X-Forwarded-For');
  h.set('X-Forwarded-For', prior.length > 0 ? `${prior.join(', ')}, ${r.peerIP}` : r.peerIP);
  if (!h.has('X-Forwarded-Method')) h.set('X-Forwarded-Method', r.method);
  if (!h.has('X-Forwarded-Proto')) h.set('X-Forwarded-Proto', 'http');
  if (!h.has('X-Forwarded-Port'))
    h.set('X-Forwarded-Port', forwardedPort(r.host, h.get('X-Forwarded-Proto')));
  if (!h.has('X-Forwarded-Host')) h.set('X-Forwarded-Host', r.host);
  if (!h.has('X-Forwarded-Uri')) h.set('X-Forwarded-Uri', requestURIValue);
  return h;
}

/** forward.go hopHeaders (note the historical "Trailers" spelling). */
const AUTH_HOP_HEADERS = ['Connection', 'Keep-Alive', 'Te', 'Trailers', 'Transfer-Encoding', 'Upgrade'];

/** connectionheader.go RemoveConnectionHeaders (the Connection/Upgrade pair it may keep is removed afterwards). */
function removeConnectionListedHeaders(h: GoHeader): void {
  for (const value of h.values('Connection')) {
    for (const token of value.split(',')) {
      const name = trimOWS(token);
      if (name !== '') h.del(name);
    }
  }
}

type AuthResult =
  | { kind: 'transport-error' }
  | { kind: 'cancelled' }
  | { kind: 'read-error' }
  | { kind: 'response'; status: number; header: GoHeader; body: Buffer };

/**
 * The Go http.Client call (§3.1, §3.5, §3.7): no redirect following, one overall timeout covering connect,
 * headers and body, Accept-Encoding: gzip added when absent and undone transparently. In v3 a client that goes
 * away cancels the call (the request context is used).
 */
function sendAuthRequest(
  ctx: EmulatorContext,
  method: string,
  target: GoURL,
  header: GoHeader,
  clientResponse: ServerResponse,
): Promise<AuthResult> {
  ctx.authCalls++;
  return new Promise<AuthResult>((resolve) => {
    const endpoint = dialEndpoint(target);
    if (endpoint === undefined) {
      resolve({ kind: 'transport-error' });
      return;
    }
    const acceptGzip =
      header.get('Accept-Encoding') === '' && header.get('Range') === '' && method !== 'HEAD';
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: AuthResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clientResponse.off('close', onClientGone);
      resolve(result);
    };

    const authReq = goClientRequest(
      ctx,
      method,
      endpoint,
      requestURI(target),
      target.host,
      header,
      acceptGzip,
    );
    timer = setTimeout(() => authReq.destroy(new Error('auth request timeout')), ctx.authTimeoutMs);
    const onClientGone = () => {
      if (ctx.profile === 'v3' && !clientResponse.writableFinished) {
        finish({ kind: 'cancelled' });
        authReq.destroy();
      }
    };
    clientResponse.on('close', onClientGone);

    authReq.on('error', () => finish({ kind: 'transport-error' }));
    authReq.on('response', (authRes) => {
      const chunks: Buffer[] = [];
      authRes.on('data', (chunk: Buffer) => chunks.push(chunk));
      authRes.on('error', () => finish({ kind: 'read-error' }));
      authRes.on('close', () => {
        if (!authRes.complete) finish({ kind: 'read-error' });
      });
      authRes.on('end', () => {
        const h = goResponseHeader(authRes);
        let body = Buffer.concat(chunks);
        if (acceptGzip && h.get('Content-Encoding').toLowerCase() === 'gzip') {
          try {
            body = gunzipSync(body);
          } catch {
            finish({ kind: 'read-error' });
            return;
          }
          h.del('Content-Encoding');
          h.del('Content-Length');
        }
        finish({ kind: 'response', status: authRes.statusCode ?? 500, header: h, body });
      });
    });
    authReq.end();
  });
}

/** Spec §4 evaluation order. */
function handleAuthResponse(
  profile: Profile,
  fa: ResolvedForwardAuth,
  target: GoURL,
  r: InboundRequest,
  res: ServerResponse,
  result: AuthResult,
): ForwardAuthOutcome {
  switch (result.kind) {
    case 'transport-error':
    case 'read-error':
      writeEmpty(res, 500); // §4.1: 500, empty body, Content-Length: 0
      return { done: true };
    case 'cancelled':
      writeEmpty(res, 499); // v3.5+: client closed request (nobody is listening any more)
      return { done: true };
  }
  if (fa.maxResponseBodySize >= 0 && result.body.length > fa.maxResponseBodySize) {
    writeEmpty(res, 401); // §4 step 2
    return { done: true };
  }
  if (fa.authSigninURL !== '' && result.status === 401) {
    writeGoRedirect(res, r, fa.authSigninURL, 302); // §4 step 4: no auth header is copied
    return { done: true };
  }
  if (result.status < 200 || result.status >= 300) {
    relayAuthResponse(fa, target, res, result.status, result.header, result.body);
    return { done: true };
  }
  copyAuthResponseHeaders(fa, r.header, result.header);
  return { done: false, modifier: authCookieModifier(profile, fa, result.header) };
}

/** §4.2: non-2xx goes back to the client with all headers (minus hop-by-hop), Location resolved, same body. */
function relayAuthResponse(
  fa: ResolvedForwardAuth,
  target: GoURL,
  res: ServerResponse,
  status: number,
  authHeader: GoHeader,
  body: Buffer,
): void {
  const h = authHeader.clone();
  for (const name of AUTH_HOP_HEADERS) h.del(name);

  const location = h.get('Location');
  if (location !== '') {
    let resolved: string;
    try {
      // resp.Location() resolves against the auth request URL; preserveLocationHeader only round-trips it.
      const parsed = parseURL(location);
      resolved = urlString(fa.preserveLocationHeader ? parsed : resolveReference(target, parsed));
    } catch {
      // An unparseable Location gives 500; the auth headers were already copied and leak into it (§4.1).
      writeHeaderBlock(res, 500, h);
      if (Number(h.get('Content-Length') || '0') > 0) {
        // Go's server closes the connection when fewer bytes than the declared Content-Length were written.
        res.end(() => res.destroy());
      } else {
        res.end();
      }
      return;
    }
    if (resolved !== '') h.set('Location', resolved);
  }
  writeHeaderBlock(res, status, h);
  res.end(body);
}

/** §4.3: authResponseHeaders (delete, then set all values) followed by the regex (delete matches, copy matches). */
function copyAuthResponseHeaders(
  fa: ResolvedForwardAuth,
  requestHeader: GoHeader,
  authHeader: GoHeader,
): void {
  for (const name of fa.authResponseHeaders) {
    requestHeader.del(name);
    const values = authHeader.values(name);
    if (values.length > 0) requestHeader.setValues(name, values);
  }
  const regex = fa.authResponseHeadersRegex;
  if (regex === undefined) return;
  for (const key of requestHeader.keys()) if (matches(regex, key)) requestHeader.deleteKey(key);
  for (const key of authHeader.keys())
    if (matches(regex, key)) requestHeader.setValues(key, authHeader.values(key));
}

function matches(regex: RegExp, s: string): boolean {
  regex.lastIndex = 0;
  return regex.test(s);
}

/**
 * §4.4 (v3 only): when the 2xx auth reply has at least one parseable Set-Cookie, the downstream response's
 * cookies are re-parsed and re-serialised Go-style, listed names are removed, and the listed auth cookies
 * appended. This also applies when `addAuthCookiesToResponse` is empty.
 */
function authCookieModifier(
  profile: Profile,
  fa: ResolvedForwardAuth,
  authHeader: GoHeader,
): ResponseModifier | undefined {
  if (profile === 'v2') return undefined;
  const authCookies = readSetCookies(authHeader);
  if (authCookies.length === 0) return undefined;
  const listed = fa.addAuthCookiesToResponse;
  return (header) => {
    const downstream = readSetCookies(header);
    header.del('Set-Cookie');
    for (const cookie of downstream)
      if (!listed.has(cookie.name)) header.add('Set-Cookie', cookieString(cookie));
    for (const cookie of authCookies)
      if (listed.has(cookie.name)) header.add('Set-Cookie', cookieString(cookie));
  };
}

// ---------------------------------------------------------------------------------------------------------
// Reverse proxy to the service (Go httputil.ReverseProxy with Traefik's Rewrite; spec §4.3 last bullet)
// ---------------------------------------------------------------------------------------------------------

/** httputil.ReverseProxy hopHeaders. */
const PROXY_HOP_HEADERS = [
  'Connection',
  'Proxy-Connection',
  'Keep-Alive',
  'Proxy-Authenticate',
  'Proxy-Authorization',
  'Te',
  'Trailer',
  'Transfer-Encoding',
  'Upgrade',
];

function removeProxyHopHeaders(h: GoHeader): void {
  removeConnectionListedHeaders(h);
  for (const name of PROXY_HOP_HEADERS) h.del(name);
}

function proxyToService(
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

// ---------------------------------------------------------------------------------------------------------
// Go's HTTP client on the wire
// ---------------------------------------------------------------------------------------------------------

const GO_DEFAULT_USER_AGENT = 'Go-http-client/1.1';

interface DialEndpoint {
  hostname: string;
  port: number;
}

/** Where to connect for an http:// URL. Only loopback is dialled (anything else counts as unreachable). */
function dialEndpoint(u: GoURL): DialEndpoint | undefined {
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
function goClientRequest(
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
function goResponseHeader(res: IncomingMessage): GoHeader {
  const h = GoHeader.fromRaw(res.rawHeaders);
  if (h.has('Transfer-Encoding')) {
    h.del('Transfer-Encoding');
    h.del('Content-Length');
    h.del('Trailer');
  }
  return h;
}

// ---------------------------------------------------------------------------------------------------------
// Writing responses the way Go's server and Traefik do
// ---------------------------------------------------------------------------------------------------------

/** Status and headers (canonical names, sorted, every value on its own line). Go sends no Connection header. */
function writeHeaderBlock(res: ServerResponse, status: number, header: GoHeader): void {
  res.statusCode = status;
  res.removeHeader('Connection');
  for (const [key, values] of header.sortedEntries())
    res.setHeader(key, values.length === 1 ? values[0]! : values);
}

/** `rw.WriteHeader(code)` with no body: Go adds Content-Length: 0 (and Date). */
function writeEmpty(res: ServerResponse, status: number): void {
  writeHeaderBlock(res, status, new GoHeader());
  res.setHeader('Content-Length', '0');
  res.end();
}

/** net/http http.Error. */
function writeGoHttpError(res: ServerResponse, status: number, message: string): void {
  const h = new GoHeader();
  h.set('Content-Type', 'text/plain; charset=utf-8');
  h.set('X-Content-Type-Options', 'nosniff');
  writeHeaderBlock(res, status, h);
  res.end(`${message}\n`);
}

/** Go's server answer to a request line it cannot parse. */
function writeGoServerBadRequest(res: ServerResponse): void {
  res.shouldKeepAlive = false;
  const h = new GoHeader();
  h.set('Content-Type', 'text/plain; charset=utf-8');
  writeHeaderBlock(res, 400, h);
  res.setHeader('Connection', 'close');
  res.end('400 Bad Request');
}

/** net/http http.Redirect, as used for authSigninURL (§4 step 4). */
function writeGoRedirect(res: ServerResponse, r: InboundRequest, target: string, code: number): void {
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

function htmlEscape(s: string): string {
  const map: Record<string, string> = { '&': '&amp;', "'": '&#39;', '<': '&lt;', '>': '&gt;', '"': '&#34;' };
  return s.replace(/[&'<>"]/g, (c) => map[c] ?? c);
}

// ---------------------------------------------------------------------------------------------------------
// Go's http.Header
// ---------------------------------------------------------------------------------------------------------

const TOKEN_PUNCTUATION = "!#$%&'*+-.^_`|~";

function isTokenChar(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c < 0x80 && c > 0x20 && TOKEN_PUNCTUATION.includes(String.fromCharCode(c)))
  );
}

/** textproto.CanonicalMIMEHeaderKey: `x-auth-user` → `X-Auth-User`, `x_auth_user` → `X_auth_user`. */
function canonicalHeaderKey(name: string): string {
  for (let i = 0; i < name.length; i++) if (!isTokenChar(name.charCodeAt(i))) return name;
  let out = '';
  let upper = true;
  for (const ch of name) {
    out += upper ? ch.toUpperCase() : ch.toLowerCase();
    upper = ch === '-';
  }
  return out;
}

/** A Go http.Header: canonical name → all values, in arrival order. */
class GoHeader {
  private readonly map = new Map<string, string[]>();

  /** From Node's `rawHeaders` (every line kept, unlike the comma-joined `headers` view). */
  static fromRaw(raw: string[]): GoHeader {
    const h = new GoHeader();
    for (let i = 0; i + 1 < raw.length; i += 2) h.add(raw[i]!, raw[i + 1]!);
    return h;
  }

  clone(): GoHeader {
    const h = new GoHeader();
    for (const [key, values] of this.map) h.map.set(key, [...values]);
    return h;
  }

  values(name: string): string[] {
    return this.map.get(canonicalHeaderKey(name)) ?? [];
  }

  /** First value or ''. */
  get(name: string): string {
    return this.values(name)[0] ?? '';
  }

  has(name: string): boolean {
    return this.map.has(canonicalHeaderKey(name));
  }

  set(name: string, value: string): void {
    this.map.set(canonicalHeaderKey(name), [value]);
  }

  setValues(name: string, values: string[]): void {
    this.map.set(canonicalHeaderKey(name), [...values]);
  }

  add(name: string, value: string): void {
    const key = canonicalHeaderKey(name);
    const existing = this.map.get(key);
    if (existing) existing.push(value);
    else this.map.set(key, [value]);
  }

  del(name: string): void {
    this.map.delete(canonicalHeaderKey(name));
  }

  /** `delete(header, key)`: no canonicalisation. */
  deleteKey(key: string): void {
    this.map.delete(key);
  }

  keys(): string[] {
    return [...this.map.keys()];
  }

  /** Go writes header maps sorted by name. */
  sortedEntries(): [string, string[]][] {
    return [...this.map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

/** httpguts.HeaderValuesContainsToken. */
function headerValuesContainToken(values: string[], token: string): boolean {
  return values.some((v) => v.split(',').some((t) => trimOWS(t).toLowerCase() === token.toLowerCase()));
}

/** textproto.TrimString. */
function trimOWS(s: string): string {
  return s.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');
}

/** net.SplitHostPort; undefined when there is no port. */
function netSplitHostPort(hostport: string): { host: string; port: string } | undefined {
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']');
    if (end < 0 || hostport[end + 1] !== ':') return undefined;
    return { host: hostport.slice(1, end), port: hostport.slice(end + 2) };
  }
  const colon = hostport.lastIndexOf(':');
  if (colon < 0 || hostport.indexOf(':') !== colon) return undefined;
  return { host: hostport.slice(0, colon), port: hostport.slice(colon + 1) };
}

// ---------------------------------------------------------------------------------------------------------
// Go's net/url (the parts Traefik's behaviour depends on). Strings are byte strings (one char per byte).
// ---------------------------------------------------------------------------------------------------------

interface GoURL {
  scheme: string;
  opaque: string;
  /** Raw userinfo (kept verbatim; Go would re-escape it). */
  userinfo: string | undefined;
  host: string;
  omitHost: boolean;
  path: string;
  rawPath: string;
  forceQuery: boolean;
  rawQuery: string;
  fragment: string;
  rawFragment: string;
}

type Encoding = 'path' | 'host' | 'fragment';

function emptyURL(): GoURL {
  return {
    scheme: '',
    opaque: '',
    userinfo: undefined,
    host: '',
    omitHost: false,
    path: '',
    rawPath: '',
    forceQuery: false,
    rawQuery: '',
    fragment: '',
    rawFragment: '',
  };
}

function shouldEscape(c: number, mode: Encoding): boolean {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)) return false;
  if (c >= 0x80) return true;
  const ch = String.fromCharCode(c);
  if (mode === 'host' && `!$&'()*+,;=:[]<>"`.includes(ch)) return false;
  if ('-_.~'.includes(ch)) return false;
  if ('$&+,/:;=?@'.includes(ch)) {
    if (mode === 'path') return ch === '?';
    return mode !== 'fragment';
  }
  if (mode === 'fragment' && '!()*'.includes(ch)) return false;
  return true;
}

function urlEscape(s: string, mode: Encoding): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    out += shouldEscape(c, mode) ? `%${c.toString(16).toUpperCase().padStart(2, '0')}` : s[i];
  }
  return out;
}

function urlUnescape(s: string, mode: Encoding): string {
  let out = '';
  for (let i = 0; i < s.length; ) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error(`invalid URL escape "${s.slice(i, i + 3)}"`);
      if (mode === 'host' && Number.parseInt(hex[0]!, 16) < 8 && hex !== '25') {
        throw new Error(`invalid URL escape "%${hex}"`);
      }
      out += String.fromCharCode(Number.parseInt(hex, 16));
      i += 3;
      continue;
    }
    if (mode === 'host' && c < 0x80 && shouldEscape(c, 'host'))
      throw new Error('invalid character in host name');
    out += s[i];
    i++;
  }
  return out;
}

function validEncoded(s: string, mode: Encoding): boolean {
  for (let i = 0; i < s.length; i++) {
    if ("!$&'()*+,;=:@[]%".includes(s[i]!)) continue;
    if (shouldEscape(s.charCodeAt(i), mode)) return false;
  }
  return true;
}

function setPath(u: GoURL, p: string): void {
  u.path = urlUnescape(p, 'path');
  u.rawPath = urlEscape(u.path, 'path') === p ? '' : p;
}

function escapedPath(u: GoURL): string {
  if (u.rawPath !== '' && validEncoded(u.rawPath, 'path')) {
    try {
      if (urlUnescape(u.rawPath, 'path') === u.path) return u.rawPath;
    } catch {
      // fall through to the default encoding
    }
  }
  if (u.path === '*') return '*';
  return urlEscape(u.path, 'path');
}

function setFragment(u: GoURL, f: string): void {
  u.fragment = urlUnescape(f, 'fragment');
  u.rawFragment = urlEscape(u.fragment, 'fragment') === f ? '' : f;
}

function escapedFragment(u: GoURL): string {
  if (u.rawFragment !== '' && validEncoded(u.rawFragment, 'fragment')) {
    try {
      if (urlUnescape(u.rawFragment, 'fragment') === u.fragment) return u.rawFragment;
    } catch {
      // fall through to the default encoding
    }
  }
  return urlEscape(u.fragment, 'fragment');
}

/** URL.RequestURI: escaped path (or opaque) plus `?` + raw query when a query, or a bare `?`, was present. */
function requestURI(u: GoURL): string {
  let result = u.opaque;
  if (result === '') {
    result = escapedPath(u);
    if (result === '') result = '/';
  } else if (result.startsWith('//')) {
    result = `${u.scheme}:${result}`;
  }
  if (u.forceQuery || u.rawQuery !== '') result += `?${u.rawQuery}`;
  return result;
}

/** url.Parse. Throws on the inputs Go rejects. */
function parseURL(raw: string): GoURL {
  const hash = raw.indexOf('#');
  const u = parseWithoutFragment(hash >= 0 ? raw.slice(0, hash) : raw, false);
  setFragment(u, hash >= 0 ? raw.slice(hash + 1) : '');
  return u;
}

/** url.ParseRequestURI, as Go's server applies it to the request target. */
function parseRequestURI(raw: string): GoURL {
  return parseWithoutFragment(raw, true);
}

function parseWithoutFragment(raw: string, viaRequest: boolean): GoURL {
  if (/[\x00-\x1f\x7f]/.test(raw)) throw new Error('invalid control character in URL');
  if (raw === '' && viaRequest) throw new Error('empty url');
  const u = emptyURL();
  if (raw === '*') {
    u.path = '*';
    return u;
  }
  const [scheme, afterScheme] = getScheme(raw);
  u.scheme = scheme.toLowerCase();
  let rest = afterScheme;
  if (rest.endsWith('?') && rest.indexOf('?') === rest.length - 1) {
    u.forceQuery = true;
    rest = rest.slice(0, -1);
  } else {
    const q = rest.indexOf('?');
    if (q >= 0) {
      u.rawQuery = rest.slice(q + 1);
      rest = rest.slice(0, q);
    }
  }
  if (!rest.startsWith('/')) {
    if (u.scheme !== '') {
      u.opaque = rest;
      return u;
    }
    if (viaRequest) throw new Error('invalid URI for request');
    if ((rest.split('/')[0] ?? '').includes(':'))
      throw new Error('first path segment in URL cannot contain colon');
  }
  if ((u.scheme !== '' || (!viaRequest && !rest.startsWith('///'))) && rest.startsWith('//')) {
    let authority = rest.slice(2);
    rest = '';
    const slash = authority.indexOf('/');
    if (slash >= 0) {
      rest = authority.slice(slash);
      authority = authority.slice(0, slash);
    }
    parseAuthority(u, authority);
  } else if (u.scheme !== '' && rest.startsWith('/')) {
    u.omitHost = true;
  }
  setPath(u, rest);
  return u;
}

function getScheme(raw: string): [string, string] {
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (/[a-zA-Z]/.test(c)) continue;
    if (/[0-9+\-.]/.test(c)) {
      if (i === 0) return ['', raw];
      continue;
    }
    if (c === ':') {
      if (i === 0) throw new Error('missing protocol scheme');
      return [raw.slice(0, i), raw.slice(i + 1)];
    }
    return ['', raw];
  }
  return ['', raw];
}

function parseAuthority(u: GoURL, authority: string): void {
  const at = authority.lastIndexOf('@');
  const host = at < 0 ? authority : authority.slice(at + 1);
  if (host.startsWith('[')) {
    const end = host.lastIndexOf(']');
    if (end < 0) throw new Error("missing ']' in host");
    if (!/^(:\d*)?$/.test(host.slice(end + 1))) throw new Error('invalid port after host');
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1 && !/^:\d*$/.test(host.slice(colon))) throw new Error('invalid port after host');
  }
  u.host = urlUnescape(host, 'host');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:%@]*$/.test(userinfo)) throw new Error('invalid userinfo');
    u.userinfo = userinfo;
  }
}

/** URL.String. */
function urlString(u: GoURL): string {
  let buf = '';
  if (u.scheme !== '') buf += `${u.scheme}:`;
  if (u.opaque !== '') {
    buf += u.opaque;
  } else {
    if (u.scheme !== '' || u.host !== '' || u.userinfo !== undefined) {
      if (!(u.omitHost && u.host === '' && u.userinfo === undefined)) {
        if (u.host !== '' || u.path !== '' || u.userinfo !== undefined) buf += '//';
        if (u.userinfo !== undefined) buf += `${u.userinfo}@`;
        if (u.host !== '') buf += urlEscape(u.host, 'host');
      }
    }
    const p = escapedPath(u);
    if (p !== '' && !p.startsWith('/') && u.host !== '') buf += '/';
    if (buf === '' && (p.split('/')[0] ?? '').includes(':')) buf += './';
    buf += p;
  }
  if (u.forceQuery || u.rawQuery !== '') buf += `?${u.rawQuery}`;
  if (u.fragment !== '') buf += `#${escapedFragment(u)}`;
  return buf;
}

/** URL.ResolveReference (RFC 3986 §5.2). */
function resolveReference(base: GoURL, ref: GoURL): GoURL {
  const url: GoURL = { ...ref };
  if (ref.scheme === '') url.scheme = base.scheme;
  if (ref.scheme !== '' || ref.host !== '' || ref.userinfo !== undefined) {
    setPath(url, resolvePath(escapedPath(ref), ''));
    return url;
  }
  if (ref.opaque !== '') {
    url.userinfo = undefined;
    url.host = '';
    url.path = '';
    return url;
  }
  if (ref.path === '' && !ref.forceQuery && ref.rawQuery === '') {
    url.rawQuery = base.rawQuery;
    if (ref.fragment === '') {
      url.fragment = base.fragment;
      url.rawFragment = base.rawFragment;
    }
  }
  if (ref.path === '' && base.opaque !== '') {
    url.opaque = base.opaque;
    url.userinfo = undefined;
    url.host = '';
    url.path = '';
    return url;
  }
  url.host = base.host;
  url.userinfo = base.userinfo;
  setPath(url, resolvePath(escapedPath(base), escapedPath(ref)));
  return url;
}

/** net/url resolvePath: merge and remove dot segments. */
function resolvePath(base: string, ref: string): string {
  let full: string;
  if (ref === '') full = base;
  else if (!ref.startsWith('/')) full = base.slice(0, base.lastIndexOf('/') + 1) + ref;
  else full = ref;
  if (full === '') return '';

  let dst = '/';
  let first = true;
  let elem = '';
  const parts = full.split('/');
  for (const part of parts) {
    elem = part;
    if (elem === '.') {
      first = false;
      continue;
    }
    if (elem === '..') {
      const str = dst.slice(1);
      const index = str.lastIndexOf('/');
      dst = '/';
      if (index === -1) first = true;
      else dst += str.slice(0, index);
    } else {
      if (!first) dst += '/';
      dst += elem;
      first = false;
    }
  }
  if (elem === '.' || elem === '..') dst += '/';
  return dst.length > 1 && dst[1] === '/' ? dst.slice(1) : dst;
}

/** path.Clean. */
function pathClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const segment of p.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(segment);
  }
  const joined = out.join('/');
  if (rooted) return `/${joined}`;
  return joined === '' ? '.' : joined;
}

/** URL.JoinPath() with no elements: clean the escaped path, keeping a trailing slash. */
function joinPath(u: GoURL): GoURL {
  let first = escapedPath(u);
  let p: string;
  if (!first.startsWith('/')) {
    first = `/${first}`;
    p = pathClean(first).slice(1);
  } else {
    p = pathClean(first);
  }
  if (first.endsWith('/') && !p.endsWith('/')) p += '/';
  const out: GoURL = { ...u };
  try {
    setPath(out, p);
  } catch {
    // Go ignores the error and keeps the old path
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Go's net/http cookies (readSetCookies / ParseSetCookie / Cookie.String, Go 1.26 as used by Traefik 3.7)
// ---------------------------------------------------------------------------------------------------------

type SameSite = 'default' | 'lax' | 'strict' | 'none' | undefined;

interface GoCookie {
  name: string;
  value: string;
  quoted: boolean;
  path: string;
  domain: string;
  expires: Date | undefined;
  /** 0 = unset, <0 = delete now ("Max-Age=0"). */
  maxAge: number;
  httpOnly: boolean;
  secure: boolean;
  sameSite: SameSite;
  partitioned: boolean;
}

/** readSetCookies: invalid lines are silently dropped. */
function readSetCookies(h: GoHeader): GoCookie[] {
  const cookies: GoCookie[] = [];
  for (const line of h.values('Set-Cookie')) {
    const cookie = parseSetCookie(line);
    if (cookie) cookies.push(cookie);
  }
  return cookies;
}

function isCookieNameValid(name: string): boolean {
  if (name === '') return false;
  for (let i = 0; i < name.length; i++) if (!isTokenChar(name.charCodeAt(i))) return false;
  return true;
}

function isCookieValueByte(c: number): boolean {
  return c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x3b && c !== 0x5c;
}

function parseCookieValue(
  raw: string,
  allowDoubleQuote: boolean,
): { value: string; quoted: boolean } | undefined {
  let value = raw;
  let quoted = false;
  if (allowDoubleQuote && value.length > 1 && value.startsWith('"') && value.endsWith('"')) {
    value = value.slice(1, -1);
    quoted = true;
  }
  for (let i = 0; i < value.length; i++) if (!isCookieValueByte(value.charCodeAt(i))) return undefined;
  return { value, quoted };
}

function parseSetCookie(line: string): GoCookie | undefined {
  const parts = trimOWS(line).split(';');
  if (parts.length === 1 && parts[0] === '') return undefined;
  const first = trimOWS(parts[0] ?? '');
  const eq = first.indexOf('=');
  if (eq < 0) return undefined;
  const name = trimOWS(first.slice(0, eq));
  if (!isCookieNameValid(name)) return undefined;
  const parsedValue = parseCookieValue(first.slice(eq + 1), true);
  if (parsedValue === undefined) return undefined;
  const cookie: GoCookie = {
    name,
    value: parsedValue.value,
    quoted: parsedValue.quoted,
    path: '',
    domain: '',
    expires: undefined,
    maxAge: 0,
    httpOnly: false,
    secure: false,
    sameSite: undefined,
    partitioned: false,
  };
  for (const rawPart of parts.slice(1)) {
    const part = trimOWS(rawPart);
    if (part === '') continue;
    const attrEq = part.indexOf('=');
    const attr = attrEq < 0 ? part : part.slice(0, attrEq);
    if (!/^[\x20-\x7e]*$/.test(attr)) continue;
    const parsed = parseCookieValue(attrEq < 0 ? '' : part.slice(attrEq + 1), false);
    if (parsed === undefined) continue; // kept only in Cookie.Unparsed, never serialised
    const val = parsed.value;
    switch (attr.toLowerCase()) {
      case 'samesite': {
        const lower = /^[\x20-\x7e]*$/.test(val) ? val.toLowerCase() : '';
        cookie.sameSite = lower === 'lax' || lower === 'strict' || lower === 'none' ? lower : 'default';
        break;
      }
      case 'secure':
        cookie.secure = true;
        break;
      case 'httponly':
        cookie.httpOnly = true;
        break;
      case 'domain':
        cookie.domain = val;
        break;
      case 'max-age': {
        if (!/^[+-]?\d+$/.test(val)) break;
        const secs = Number(val);
        if (!Number.isSafeInteger(secs) || (secs !== 0 && val.startsWith('0'))) break;
        cookie.maxAge = secs <= 0 ? -1 : secs;
        break;
      }
      case 'expires':
        cookie.expires = parseCookieExpires(val); // unparsable → zero time → not serialised
        break;
      case 'path':
        cookie.path = val;
        break;
      case 'partitioned':
        cookie.partitioned = true;
        break;
    }
  }
  return cookie;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/**
 * time.Parse with time.RFC1123 ("Mon, 02 Jan 2006 15:04:05 MST") or "Mon, 02-Jan-2006 15:04:05 MST".
 * Zone abbreviations other than GMT±N count as UTC (Traefik running with TZ=UTC).
 */
function parseCookieExpires(value: string): Date | undefined {
  const m =
    /^([A-Za-z]{3}), (\d{2})([ -])([A-Za-z]{3})\3(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:[.,]\d+)? (UTC|GMT(?:[+-]\d{1,2})?|ChST|MeST|[A-Z]{3,5}|[+-]\d{2,4})$/.exec(
      value,
    );
  if (!m) return undefined;
  const [
    ,
    weekday = '',
    dayText = '',
    ,
    monthText = '',
    yearText = '',
    hh = '',
    mm = '',
    ss = '',
    zone = '',
  ] = m;
  if (!WEEKDAYS.includes(weekday.toLowerCase())) return undefined;
  const month = MONTHS.indexOf(monthText.toLowerCase());
  const [day, year, hour, minute, second] = [dayText, yearText, hh, mm, ss].map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 0 || hour > 23 || minute > 59 || second > 59) return undefined;
  if (/^[A-Z]{4,5}$/.test(zone) && !zone.endsWith('T') && zone !== 'WITA') return undefined;
  const daysInMonth =
    new Date(Date.UTC(2000, month + 1, 0)).getUTCDate() + (month === 1 && !isLeap(year) ? -1 : 0);
  if (day < 1 || day > daysInMonth) return undefined;
  const gmtOffset = /^GMT([+-]\d{1,2})$/.exec(zone);
  const offsetHours = gmtOffset ? Number(gmtOffset[1]) : 0;
  const date = new Date(0);
  date.setUTCFullYear(year, month, day);
  date.setUTCHours(hour - offsetHours, minute, second, 0);
  return date;
}

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** isCookieDomainName, or an IPv4 address (validCookieDomain). */
function validCookieDomain(domain: string): boolean {
  if (isIP(domain) === 4) return true;
  let s = domain;
  if (s.length === 0 || s.length > 255) return false;
  if (s.startsWith('.')) s = s.slice(1);
  let last = '.';
  let sawLetter = false;
  let partLength = 0;
  for (const c of s) {
    if (/[a-zA-Z]/.test(c)) {
      sawLetter = true;
      partLength++;
    } else if (/[0-9]/.test(c)) {
      partLength++;
    } else if (c === '-') {
      if (last === '.') return false;
      partLength++;
    } else if (c === '.') {
      if (last === '.' || last === '-' || partLength > 63 || partLength === 0) return false;
      partLength = 0;
    } else {
      return false;
    }
    last = c;
  }
  return last !== '-' && partLength <= 63 && sawLetter;
}

/** Cookie.String: Path, Domain (no leading dot), Expires, Max-Age, HttpOnly, Secure, SameSite, Partitioned. */
function cookieString(c: GoCookie): string {
  let value = [...c.value].filter((ch) => isCookieValueByte(ch.charCodeAt(0))).join('');
  if (value !== '' && (/[ ,]/.test(value) || c.quoted)) value = `"${value}"`;
  let out = `${c.name}=${value}`;
  if (c.path !== '') out += `; Path=${c.path.replace(/[^\x20-\x7e]|;/g, '')}`;
  if (c.domain !== '' && validCookieDomain(c.domain)) out += `; Domain=${c.domain.replace(/^\./, '')}`;
  if (c.expires !== undefined && c.expires.getUTCFullYear() >= 1601)
    out += `; Expires=${c.expires.toUTCString()}`;
  if (c.maxAge > 0) out += `; Max-Age=${c.maxAge}`;
  else if (c.maxAge < 0) out += '; Max-Age=0';
  if (c.httpOnly) out += '; HttpOnly';
  if (c.secure) out += '; Secure';
  if (c.sameSite === 'none') out += '; SameSite=None';
  else if (c.sameSite === 'lax') out += '; SameSite=Lax';
  else if (c.sameSite === 'strict') out += '; SameSite=Strict';
  if (c.partitioned) out += '; Partitioned';
  return out;
}
