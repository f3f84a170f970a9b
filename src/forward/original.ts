import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { AppError } from '../errors.ts';
import type { ProxyTrust } from './trust.ts';

/** The request the user actually made, reconstructed from the proxy's X-Forwarded-* headers. */
export interface OriginalRequest {
  readonly method: string;
  readonly proto: 'http' | 'https';
  /** Lower-cased host, with the port when it is not the scheme's default. */
  readonly host: string;
  /** Path and query exactly as forwarded (escaped). */
  readonly uri: string;
  readonly path: string;
  /** `proto://host/uri` */
  readonly url: string;
  readonly clientIp: string;
  /** True when the X-Forwarded-* headers came from a trusted proxy and were used. */
  readonly forwarded: boolean;
}

const HOST_RE =
  /^(?:[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*\.?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/;
const METHOD_RE = /^[A-Z]{1,16}$/;
// A request-target path: printable ASCII only, no spaces, no backslash, no fragment.
const URI_RE = /^\/[\x21-\x7e]*$/;

function first(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const comma = v.indexOf(',');
  return (comma === -1 ? v : v.slice(0, comma)).trim();
}

function bad(detail: string): never {
  throw new AppError('invalid_forwarded_request', 'The request forwarded by the proxy is malformed.', {
    detail,
  });
}

/** Removes the scheme's default port so that `host:443` and `host` compare equal. */
export function normaliseHost(host: string, proto: 'http' | 'https'): string {
  const h = host
    .toLowerCase()
    .replace(/\.$/, '')
    .replace(/\.(:\d+)$/, '$1');
  if (proto === 'https' && h.endsWith(':443')) return h.slice(0, -4);
  if (proto === 'http' && h.endsWith(':80')) return h.slice(0, -3);
  return h;
}

/**
 * Reads the original request. X-Forwarded-* are honoured only from trusted peers (TRUSTED_PROXIES);
 * from anyone else the request is taken as it arrived. `defaultUri` is used when a trusted proxy
 * sent no X-Forwarded-Uri (the /auth endpoints pass "/": their own path means nothing).
 */
export function readOriginalRequest(
  req: IncomingMessage,
  trust: ProxyTrust,
  defaultUri?: string,
): OriginalRequest {
  const peer = req.socket.remoteAddress ?? '';
  const trusted = trust.isTrusted(peer);
  const h = req.headers;

  const rawProto = (trusted ? first(h['x-forwarded-proto']) : undefined) ?? 'http';
  const protoLower = rawProto.toLowerCase();
  let proto: 'http' | 'https';
  if (protoLower === 'https' || protoLower === 'wss') proto = 'https';
  else if (protoLower === 'http' || protoLower === 'ws') proto = 'http';
  else bad('unknown X-Forwarded-Proto');

  const rawHost = (trusted ? first(h['x-forwarded-host']) : undefined) || h.host;
  if (!rawHost) bad('no host');
  const host = validHost(rawHost, proto);

  const method = (
    (trusted ? first(h['x-forwarded-method']) : undefined) ||
    req.method ||
    'GET'
  ).toUpperCase();
  if (!METHOD_RE.test(method)) bad('bad method');

  const forwardedUri = trusted
    ? Array.isArray(h['x-forwarded-uri'])
      ? h['x-forwarded-uri'][0]
      : h['x-forwarded-uri']
    : undefined;
  const uri = forwardedUri || defaultUri || req.url || '/';
  if (!URI_RE.test(uri)) bad('bad uri');
  const q = uri.indexOf('?');
  const path = q === -1 ? uri : uri.slice(0, q);

  // The client address is worked out only when something asks (logs, rate limits): the hot path
  // of /auth never needs it.
  let clientIp: string | undefined;
  return {
    method,
    proto,
    host,
    uri,
    path,
    url: `${proto}://${host}${uri}`,
    get clientIp(): string {
      clientIp ??= trusted ? clientIpFrom(h['x-forwarded-for'], peer, trust) : peer;
      return clientIp;
    },
    forwarded: trusted,
  };
}

/** Validated, normalised hosts by raw value and scheme: a proxy forwards the same few over and over. */
const hostMemo = new Map<string, string>();

function validHost(rawHost: string, proto: 'http' | 'https'): string {
  const key = proto === 'https' ? `s${rawHost}` : `p${rawHost}`;
  const known = hostMemo.get(key);
  if (known !== undefined) return known;
  const hostLower = rawHost.toLowerCase();
  if (!HOST_RE.test(hostLower)) bad('bad host');
  const host = normaliseHost(hostLower, proto);
  if (hostMemo.size >= 4096) hostMemo.clear();
  hostMemo.set(key, host);
  return host;
}

/**
 * The client as the trusted proxies saw it: the right-most X-Forwarded-For entry that is not a
 * trusted proxy (entries may carry a port: "203.0.113.7:5123", "[2001:db8::1]:443"). An entry that
 * is no IP address stops the walk: whatever stands left of it was written by someone we cannot
 * vouch for, so the nearest proxy we trust (or the peer) is taken instead, never client-chosen
 * text. When every entry is a trusted address, the left-most one (an internal client).
 */
function clientIpFrom(xff: string | string[] | undefined, peer: string, trust: ProxyTrust): string {
  if (!xff) return peer;
  const hops = (Array.isArray(xff) ? xff.join(',') : xff)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  let nearest = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = ipOf(hops[i] as string);
    if (hop === undefined) return nearest;
    if (!trust.isTrusted(hop)) return hop;
    nearest = hop;
  }
  return nearest;
}

/** The IP address in an X-Forwarded-For entry, without port or brackets; undefined when none. */
function ipOf(entry: string): string | undefined {
  if (isIP(entry) !== 0) return entry;
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/.exec(entry);
  if (bracketed && isIP(bracketed[1] as string) === 6) return bracketed[1];
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(entry);
  if (withPort && isIP(withPort[1] as string) === 4) return withPort[1];
  return undefined;
}
