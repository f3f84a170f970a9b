/** Go's net/url (the parts Traefik's behaviour depends on). Strings are byte strings (one char per byte). */

export interface GoURL {
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

export type Encoding = 'path' | 'host' | 'fragment';

export function emptyURL(): GoURL {
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

export function shouldEscape(c: number, mode: Encoding): boolean {
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

export function urlEscape(s: string, mode: Encoding): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    out += shouldEscape(c, mode) ? `%${c.toString(16).toUpperCase().padStart(2, '0')}` : s[i];
  }
  return out;
}

export function urlUnescape(s: string, mode: Encoding): string {
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

export function validEncoded(s: string, mode: Encoding): boolean {
  for (let i = 0; i < s.length; i++) {
    if ("!$&'()*+,;=:@[]%".includes(s[i]!)) continue;
    if (shouldEscape(s.charCodeAt(i), mode)) return false;
  }
  return true;
}

/** The raw form kept beside a decoded part, when it is not the default encoding (Go's RawPath, RawFragment). */
function rawUnlessDefault(decoded: string, raw: string, mode: 'path' | 'fragment'): string {
  return urlEscape(decoded, mode) === raw ? '' : raw;
}

/** EscapedPath / EscapedFragment keep the raw form when it is valid and decodes to the part. */
function validRaw(decoded: string, raw: string, mode: 'path' | 'fragment'): string | undefined {
  if (raw === '' || !validEncoded(raw, mode)) return undefined;
  try {
    return urlUnescape(raw, mode) === decoded ? raw : undefined;
  } catch {
    return undefined;
  }
}

export function setPath(u: GoURL, p: string): void {
  u.path = urlUnescape(p, 'path');
  u.rawPath = rawUnlessDefault(u.path, p, 'path');
}

export function escapedPath(u: GoURL): string {
  const raw = validRaw(u.path, u.rawPath, 'path');
  if (raw !== undefined) return raw;
  return u.path === '*' ? '*' : urlEscape(u.path, 'path');
}

export function setFragment(u: GoURL, f: string): void {
  u.fragment = urlUnescape(f, 'fragment');
  u.rawFragment = rawUnlessDefault(u.fragment, f, 'fragment');
}

export function escapedFragment(u: GoURL): string {
  return validRaw(u.fragment, u.rawFragment, 'fragment') ?? urlEscape(u.fragment, 'fragment');
}

/** URL.RequestURI: escaped path (or opaque) plus `?` + raw query when a query, or a bare `?`, was present. */
export function requestURI(u: GoURL): string {
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
export function parseURL(raw: string): GoURL {
  const hash = raw.indexOf('#');
  const u = parseWithoutFragment(hash >= 0 ? raw.slice(0, hash) : raw, false);
  setFragment(u, hash >= 0 ? raw.slice(hash + 1) : '');
  return u;
}

/** url.ParseRequestURI, as Go's server applies it to the request target. */
export function parseRequestURI(raw: string): GoURL {
  return parseWithoutFragment(raw, true);
}

export function parseWithoutFragment(raw: string, viaRequest: boolean): GoURL {
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

export function getScheme(raw: string): [string, string] {
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

export function parseAuthority(u: GoURL, authority: string): void {
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
export function urlString(u: GoURL): string {
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
export function resolveReference(base: GoURL, ref: GoURL): GoURL {
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
export function resolvePath(base: string, ref: string): string {
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
export function pathClean(p: string): string {
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
export function joinPath(u: GoURL): GoURL {
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
