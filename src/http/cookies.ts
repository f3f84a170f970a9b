/**
 * Cookie header parsing and Set-Cookie serialisation; small and allocation-light for the hot path.
 *
 * A Cookie header is read as RFC 6265 §5.4 writes it (and §4.2.1 parses it): pairs separated by
 * `;`, optional whitespace around each pair, the name being the text before the pair's first `=`
 * (trimmed). A value may contain spaces and `=`; `x=1 __Host-a=b` is ONE cookie named `x`. A pair
 * without `=` is a nameless cookie and never matches a name. Nothing but the returned value is
 * allocated.
 */

/** More than one cookie of the name was sent: whoever planted the second one must not win. */
export const CONFLICT: unique symbol = Symbol('conflicting cookies');
export type CookieLookup = string | undefined | typeof CONFLICT;

const isSpace = (code: number): boolean => code === 0x20 || code === 0x09;

/**
 * Where the pair whose name is exactly `name` starts its value (the index after `=`), searching
 * from `from`; -1 when there is none.
 */
function findPair(header: string, name: string, from: number): number {
  let at = header.indexOf(name, from);
  while (at !== -1) {
    // A pair starts at the beginning of the header or after `;` and optional whitespace.
    let before = at - 1;
    while (before >= 0 && isSpace(header.charCodeAt(before))) before--;
    if (before === -1 || header.charCodeAt(before) === 0x3b /* ; */) {
      let after = at + name.length;
      while (after < header.length && isSpace(header.charCodeAt(after))) after++;
      if (header.charCodeAt(after) === 0x3d /* = */) return after + 1;
    }
    at = header.indexOf(name, at + 1);
  }
  return -1;
}

function valueAt(header: string, start: number): string {
  const semi = header.indexOf(';', start);
  return header.slice(start, semi === -1 ? undefined : semi).trim();
}

/** Value of the first cookie named `name`, without parsing the rest. For cookies that decide nothing. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const start = findPair(header, name, 0);
  return start === -1 ? undefined : valueAt(header, start);
}

/** The index after `name` and optional whitespace when `name` is followed by `=` there; else -1. */
function nameAt(header: string, name: string, at: number): number {
  if (!header.startsWith(name, at)) return -1;
  let after = at + name.length;
  while (after < header.length && isSpace(header.charCodeAt(after))) after++;
  return header.charCodeAt(after) === 0x3d /* = */ ? after + 1 : -1;
}

/**
 * Value of the ONE cookie named `name`; CONFLICT when the header carries it more than once (a
 * sibling subdomain, or a more specific Path, planted another one: which one the browser sends
 * first is the planter's choice), or carries a cookie named `refuse` too. One pass over the
 * pairs, no allocation but the value.
 */
export function readUniqueCookie(header: string | undefined, name: string, refuse?: string): CookieLookup {
  if (!header) return undefined;
  let found = -1;
  let at = 0;
  while (at < header.length) {
    while (at < header.length && isSpace(header.charCodeAt(at))) at++;
    const start = nameAt(header, name, at);
    if (start !== -1) {
      if (found !== -1) return CONFLICT;
      found = start;
    } else if (refuse !== undefined && nameAt(header, refuse, at) !== -1) {
      return CONFLICT;
    }
    const semi = header.indexOf(';', at);
    if (semi === -1) break;
    at = semi + 1;
  }
  return found === -1 ? undefined : valueAt(header, found);
}

/**
 * All cookies whose names start with `prefix` (not the hot path). A name sent twice maps to
 * CONFLICT.
 */
export function readCookiesWithPrefix(header: string | undefined, prefix: string): Map<string, CookieLookup> {
  const out = new Map<string, CookieLookup>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    const name = part.slice(0, eq).trim();
    if (!name.startsWith(prefix)) continue;
    out.set(name, out.has(name) ? CONFLICT : part.slice(eq + 1).trim());
  }
  return out;
}

export interface CookieAttributes {
  readonly domain?: string | undefined;
  readonly secure: boolean;
  /** Seconds; 0 deletes the cookie. */
  readonly maxAge: number;
  /** Default `/`. */
  readonly path?: string;
}

export function serializeCookie(name: string, value: string, attrs: CookieAttributes): string {
  let out = `${name}=${value}; Path=${attrs.path ?? '/'}; Max-Age=${Math.max(0, Math.floor(attrs.maxAge))}`;
  if (attrs.maxAge <= 0) out += '; Expires=Thu, 01 Jan 1970 00:00:00 GMT';
  if (attrs.domain) out += `; Domain=${attrs.domain}`;
  out += '; HttpOnly';
  if (attrs.secure) out += '; Secure';
  out += '; SameSite=Lax';
  return out;
}
