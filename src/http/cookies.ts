/** Cookie header parsing and Set-Cookie serialisation; small and allocation-light for the hot path. */

/** Value of one cookie from a Cookie header, without parsing the rest. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let from = 0;
  while (from < header.length) {
    const at = header.indexOf(name, from);
    if (at === -1) return undefined;
    const before = at === 0 ? ';' : header[at - 1];
    const end = at + name.length;
    if ((before === ';' || before === ' ') && header[end] === '=') {
      const semi = header.indexOf(';', end + 1);
      return header.slice(end + 1, semi === -1 ? undefined : semi).trim();
    }
    from = end;
  }
  return undefined;
}

/** All cookies whose names start with `prefix`. */
export function readCookiesWithPrefix(header: string | undefined, prefix: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    const name = part.slice(0, eq).trim();
    if (name.startsWith(prefix)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

export interface CookieAttributes {
  readonly domain?: string | undefined;
  readonly secure: boolean;
  /** Seconds; 0 deletes the cookie. */
  readonly maxAge: number;
}

export function serializeCookie(name: string, value: string, attrs: CookieAttributes): string {
  let out = `${name}=${value}; Path=/; Max-Age=${Math.max(0, Math.floor(attrs.maxAge))}`;
  if (attrs.maxAge <= 0) out += '; Expires=Thu, 01 Jan 1970 00:00:00 GMT';
  if (attrs.domain) out += `; Domain=${attrs.domain}`;
  out += '; HttpOnly';
  if (attrs.secure) out += '; Secure';
  out += '; SameSite=Lax';
  return out;
}
