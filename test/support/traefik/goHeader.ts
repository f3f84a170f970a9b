/** Go's http.Header: canonical names, every value kept, in arrival order. */

export const TOKEN_PUNCTUATION = "!#$%&'*+-.^_`|~";

export function isTokenChar(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c < 0x80 && c > 0x20 && TOKEN_PUNCTUATION.includes(String.fromCharCode(c)))
  );
}

/** textproto.CanonicalMIMEHeaderKey: `x-auth-user` → `X-Auth-User`, `x_auth_user` → `X_auth_user`. */
export function canonicalHeaderKey(name: string): string {
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
export class GoHeader {
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
export function headerValuesContainToken(values: string[], token: string): boolean {
  return values.some((v) => v.split(',').some((t) => trimOWS(t).toLowerCase() === token.toLowerCase()));
}

/** textproto.TrimString. */
export function trimOWS(s: string): string {
  return s.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');
}

/** net.SplitHostPort; undefined when there is no port. */
export function netSplitHostPort(hostport: string): { host: string; port: string } | undefined {
  if (hostport.startsWith('[')) {
    const end = hostport.indexOf(']');
    if (end < 0 || hostport[end + 1] !== ':') return undefined;
    return { host: hostport.slice(1, end), port: hostport.slice(end + 2) };
  }
  const colon = hostport.lastIndexOf(':');
  if (colon < 0 || hostport.indexOf(':') !== colon) return undefined;
  return { host: hostport.slice(0, colon), port: hostport.slice(colon + 1) };
}
