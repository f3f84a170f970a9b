/** Go's net/http cookies (readSetCookies / ParseSetCookie / Cookie.String, Go 1.26 as used by Traefik 3.7). */
import { isIP } from 'node:net';
import { type GoHeader, isTokenChar, trimOWS } from './goHeader.ts';

export type SameSite = 'default' | 'lax' | 'strict' | 'none' | undefined;

export interface GoCookie {
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
export function readSetCookies(h: GoHeader): GoCookie[] {
  const cookies: GoCookie[] = [];
  for (const line of h.values('Set-Cookie')) {
    const cookie = parseSetCookie(line);
    if (cookie) cookies.push(cookie);
  }
  return cookies;
}

export function isCookieNameValid(name: string): boolean {
  if (name === '') return false;
  for (let i = 0; i < name.length; i++) if (!isTokenChar(name.charCodeAt(i))) return false;
  return true;
}

export function isCookieValueByte(c: number): boolean {
  return c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x3b && c !== 0x5c;
}

export function parseCookieValue(
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

export function parseSetCookie(line: string): GoCookie | undefined {
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

export const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/**
 * time.Parse with time.RFC1123 ("Mon, 02 Jan 2006 15:04:05 MST") or "Mon, 02-Jan-2006 15:04:05 MST".
 * Zone abbreviations other than GMT±N count as UTC (Traefik running with TZ=UTC).
 */
export function parseCookieExpires(value: string): Date | undefined {
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

export function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** isCookieDomainName, or an IPv4 address (validCookieDomain). */
export function validCookieDomain(domain: string): boolean {
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
export function cookieString(c: GoCookie): string {
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
