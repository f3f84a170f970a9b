import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { AppError } from '../errors.ts';
import { FOREVER, sharedMemo } from '../memory/shared.ts';
import { stringBytes } from '../memory/size.ts';
import { judgedPath } from './path.ts';
import type { ProxyTrust } from './trust.ts';

/** The request the user actually made, reconstructed from the proxy's headers. */
export interface OriginalRequest {
  readonly method: string;
  readonly proto: 'http' | 'https';
  /** Lower-cased host, with the port when it is not the scheme's default. */
  readonly host: string;
  /** Path and query exactly as forwarded (escaped): what return URLs are built from. */
  readonly uri: string;
  /** The path the policy judges (see judgedPath): `;` parameters dropped, `//` collapsed. */
  readonly path: string;
  /** `?` and the query as forwarded, or '' when there is none. */
  readonly query: string;
  /** `proto://host/uri` */
  readonly url: string;
  readonly clientIp: string;
  /** True when the headers came from a trusted proxy and were used. */
  readonly forwarded: boolean;
}

/** What a proxy said about the original request, before validation. */
export interface ForwardedParts {
  readonly method: string | undefined;
  readonly proto: string | undefined;
  readonly host: string | undefined;
  readonly uri: string | undefined;
}

const HOST_RE =
  /^(?:[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?)*\.?|\[[0-9a-f:.]+\])(?::\d{1,5})?$/;
const METHOD_RE = /^[A-Z]{1,16}$/;
// A request-target path: printable ASCII only, no spaces, no backslash, no fragment.
const URI_RE = /^\/[\x21-\x7e]*$/;

/** The first entry of a header that a proxy may have sent as a list ("a, b"). */
export function firstValue(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const comma = v.indexOf(',');
  return (comma === -1 ? v : v.slice(0, comma)).trim();
}

/** A header's value as sent; a repeated header arrives joined with ", " and fails validation. */
export function wholeValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

export function badForwarded(detail: string): never {
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

function parseProto(raw: string | undefined): 'http' | 'https' {
  const lower = (raw || 'http').toLowerCase();
  if (lower === 'https' || lower === 'wss') return 'https';
  if (lower === 'http' || lower === 'ws') return 'http';
  return badForwarded('unknown scheme');
}

/**
 * Validates what a proxy said into an OriginalRequest. `parts` holds only what the caller decided
 * to believe; missing pieces fall back to the request as it reached us (Host, method, URL).
 */
export function originalRequest(
  req: IncomingMessage,
  trust: ProxyTrust,
  parts: ForwardedParts,
  forwarded: boolean,
): OriginalRequest {
  const proto = parseProto(parts.proto);
  const rawHost = parts.host || req.headers.host;
  if (!rawHost) badForwarded('no host');
  const host = validHost(rawHost, proto);
  const method = (parts.method || req.method || 'GET').toUpperCase();
  if (!METHOD_RE.test(method)) badForwarded('bad method');
  const uri = parts.uri || req.url || '/';
  if (!URI_RE.test(uri) || uri.includes('#')) badForwarded('bad uri');
  const q = uri.indexOf('?');
  const path = judgedPath(q === -1 ? uri : uri.slice(0, q));
  const peer = req.socket.remoteAddress ?? '';
  const query = q === -1 ? '' : uri.slice(q);
  const xff = forwarded ? req.headers['x-forwarded-for'] : undefined;
  return new Original(method, proto, host, uri, path, query, forwarded, peer, xff, trust);
}

/**
 * An OriginalRequest. The client address is worked out only when something asks (logs, rate
 * limits): the hot path of /auth never needs it. It holds the strings it needs, never the request:
 * V8 may allocate objects of a busy site straight into the old generation, and one that held the
 * IncomingMessage would keep every request's objects alive through the young collections (issue
 * 15: that alone cost the hot path a third of its throughput).
 */
class Original implements OriginalRequest {
  readonly method: string;
  readonly proto: 'http' | 'https';
  readonly host: string;
  readonly uri: string;
  readonly path: string;
  readonly query: string;
  readonly url: string;
  readonly forwarded: boolean;
  #clientIp: string | undefined;
  readonly #peer: string;
  readonly #xff: string | string[] | undefined;
  readonly #trust: ProxyTrust;

  constructor(
    method: string,
    proto: 'http' | 'https',
    host: string,
    uri: string,
    path: string,
    query: string,
    forwarded: boolean,
    peer: string,
    xff: string | string[] | undefined,
    trust: ProxyTrust,
  ) {
    this.method = method;
    this.proto = proto;
    this.host = host;
    this.uri = uri;
    this.path = path;
    this.query = query;
    this.url = `${proto}://${host}${uri}`;
    this.forwarded = forwarded;
    this.#peer = peer;
    this.#xff = xff;
    this.#trust = trust;
  }

  get clientIp(): string {
    this.#clientIp ??= this.forwarded ? clientIpFrom(this.#xff, this.#peer, this.#trust) : this.#peer;
    return this.#clientIp;
  }
}

/** X-Forwarded-Method/-Proto/-Host/-Uri, as Traefik and Caddy send them (and nginx when told to). */
export function xForwardedParts(req: IncomingMessage): ForwardedParts {
  const h = req.headers;
  return {
    method: firstValue(h['x-forwarded-method']),
    proto: firstValue(h['x-forwarded-proto']),
    host: firstValue(h['x-forwarded-host']),
    uri: wholeValue(h['x-forwarded-uri']),
  };
}

/**
 * The request a browser made to one of the service's own pages (start, callback, sign-out,
 * userinfo, kubeconfig), reached through a reverse proxy: X-Forwarded-* are honoured only from
 * trusted peers (TRUSTED_PROXIES); from anyone else the request is taken as it arrived.
 */
export function readOriginalRequest(req: IncomingMessage, trust: ProxyTrust): OriginalRequest {
  const trusted = trust.isTrusted(req.socket.remoteAddress);
  const none = { method: undefined, proto: undefined, host: undefined, uri: undefined };
  return originalRequest(req, trust, trusted ? xForwardedParts(req) : none, trusted);
}

/** Validated, normalised hosts by raw value and scheme: a proxy forwards the same few over and over. */
const hostMemo = sharedMemo<string>('hosts', { share: 0.01, sizeOf: stringBytes });

function validHost(rawHost: string, proto: 'http' | 'https'): string {
  const key = proto === 'https' ? `s${rawHost}` : `p${rawHost}`;
  const known = hostMemo.peek(key, 0);
  if (known !== undefined) return known;
  const hostLower = rawHost.toLowerCase();
  if (!HOST_RE.test(hostLower)) badForwarded('bad host');
  const host = normaliseHost(hostLower, proto);
  hostMemo.set(key, host, FOREVER);
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
