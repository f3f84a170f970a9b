import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CONFLICT, readCookie, readCookiesWithPrefix, readUniqueCookie } from '../../src/http/cookies.ts';
import { CookieNames } from '../../src/session/cookieNames.ts';

/**
 * The Cookie header as RFC 6265 writes it (§4.2.1, §5.4): pairs split on `;`, optional whitespace
 * around each, the name being the text before a pair's first `=`. What a sibling subdomain can
 * plant must never be read as our cookie (issue 11 item 5).
 */

const NAME = '__Host-_forward_auth';

/** The specification, written the slow and obvious way. */
function reference(header: string, name: string, refuse?: string): string | undefined | typeof CONFLICT {
  const pairs = header
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p.includes('='))
    .map((p) => [p.slice(0, p.indexOf('=')).trim(), p.slice(p.indexOf('=') + 1).trim()] as const);
  const mine = pairs.filter(([n]) => n === name);
  if (mine.length > 1 || (refuse !== undefined && pairs.some(([n]) => n === refuse))) return CONFLICT;
  return mine[0]?.[1];
}

describe('reading the session cookie', () => {
  it.each([
    ['a planted value that reads like our cookie', `x=1 ${NAME}=attacker`, undefined],
    ['the same, before ours', `x=1 ${NAME}=attacker; ${NAME}=victim`, 'victim'],
    ['our name inside another value', `y=${NAME}=attacker; ${NAME}=victim`, 'victim'],
    ['whitespace and tabs around pairs', `a=1;  \t${NAME}=v \t; b=2`, 'v'],
    ['whitespace around the equals sign', `${NAME} = v`, 'v'],
    ['a value holding "="', `${NAME}=a=b`, 'a=b'],
    ['a longer name that starts with ours', `${NAME}_login_abc=1; ${NAME}x=2`, undefined],
    ['a nameless pair', `${NAME}; other=1`, undefined],
    ['no header', '', undefined],
  ])('%s', (_name, header, expected) => {
    expect(readUniqueCookie(header, NAME)).toBe(expected);
    expect(readCookie(header, NAME)).toBe(expected);
  });

  it('refuses the cookie sent twice, however the copies are spread', () => {
    expect(readUniqueCookie(`${NAME}=a; ${NAME}=b`, NAME)).toBe(CONFLICT);
    expect(readUniqueCookie(`${NAME}=a; x=1; y=2;${NAME}=a`, NAME)).toBe(CONFLICT);
    expect(readUniqueCookie(`${NAME}=; ${NAME}=b`, NAME)).toBe(CONFLICT);
  });

  it('refuses a cookie of the refused name beside it, and only of exactly that name', () => {
    expect(readUniqueCookie(`_forward_auth=planted; ${NAME}=v`, NAME, '_forward_auth')).toBe(CONFLICT);
    expect(readUniqueCookie(`${NAME}=v; _forward_auth =planted`, NAME, '_forward_auth')).toBe(CONFLICT);
    expect(readUniqueCookie(`_forward_auth_loop=1; ${NAME}=v`, NAME, '_forward_auth')).toBe('v');
    expect(readUniqueCookie(`x=_forward_auth=1; ${NAME}=v`, NAME, '_forward_auth')).toBe('v');
  });

  it('agrees with the specification on any header made of plausible and hostile pairs', () => {
    const names = fc.constantFrom(NAME, '_forward_auth', `${NAME}_login_1`, 'x', ` ${NAME}`, `${NAME} `, '');
    const value = fc.string({
      unit: fc.constantFrom('a', 'b', ' ', '=', '\t', '_', '-', NAME, '_forward_auth'),
      maxLength: 6,
    });
    const pair = fc.oneof(
      fc.tuple(names, value).map(([n, v]) => `${n}=${v}`),
      value, // nameless
    );
    const header = fc
      .array(pair, { maxLength: 6 })
      .chain((pairs) => fc.constantFrom(';', '; ', ';\t', ' ; ').map((sep) => pairs.join(sep)));
    fc.assert(
      fc.property(header, fc.boolean(), (h, withRefuse) => {
        const refuse = withRefuse ? '_forward_auth' : undefined;
        expect(readUniqueCookie(h, NAME, refuse)).toBe(reference(h, NAME, refuse));
      }),
      { numRuns: 3000 },
    );
  });

  it('marks a login flow cookie sent twice', () => {
    const found = readCookiesWithPrefix(
      `${NAME}_login_a=1; ${NAME}_login_b=2; ${NAME}_login_a=3`,
      `${NAME}_login_`,
    );
    expect(found.get(`${NAME}_login_a`)).toBe(CONFLICT);
    expect(found.get(`${NAME}_login_b`)).toBe('2');
  });
});

describe('CookieNames', () => {
  const hostOnly = new CookieNames({
    cookieName: '_forward_auth',
    cookieDomain: undefined,
    cookieSecure: true,
  });
  const shared = new CookieNames({
    cookieName: '_forward_auth',
    cookieDomain: '.example.com',
    cookieSecure: true,
  });

  it('with the __Host- name, a bare-name cookie beside it (a sibling planted it) is a conflict', () => {
    expect(hostOnly.readSession(`${NAME}=v`)).toBe('v');
    expect(hostOnly.readSession(`_forward_auth=planted; ${NAME}=v`)).toBe(CONFLICT);
    expect(hostOnly.readSession('_forward_auth=planted')).toBe(CONFLICT);
  });

  it('with COOKIE_DOMAIN, two session cookies are a conflict', () => {
    expect(shared.readSession('_forward_auth=v')).toBe('v');
    expect(shared.readSession('_forward_auth=planted; _forward_auth=v')).toBe(CONFLICT);
    expect(shared.readSession(`${NAME}=whatever; _forward_auth=v`)).toBe('v');
  });

  it('deletes planted copies on the parent domains and path prefixes, within bounds', () => {
    const lines = hostOnly.clearEverywhere('app.team.example.com:8443', '/dash/board;x/../deep');
    expect(lines).toContain(
      `${NAME}=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax`,
    );
    expect(lines.filter((l) => l.startsWith(`${NAME}=`))).toHaveLength(1); // __Host-: host-only, Path=/ only
    for (const domain of ['team.example.com', 'example.com', 'com']) {
      expect(lines).toContain(
        `_forward_auth=; Path=/dash; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Domain=${domain}; HttpOnly; Secure; SameSite=Lax`,
      );
    }
    // A segment that could not be written into a Path attribute safely stops the list.
    expect(lines.some((l) => l.includes('board;x'))).toBe(false);
    expect(lines.length).toBeLessThanOrEqual(1 + 5 * 5);
    expect(hostOnly.clearEverywhere('127.0.0.1:4180', '/').some((l) => l.includes('Domain='))).toBe(false);
  });

  it('the conflict answer is a 400 that deletes and offers to try again', () => {
    const error = shared.conflict({ host: 'app.example.com', path: '/x', url: 'https://app.example.com/x' });
    expect(error.status).toBe(400);
    expect(error.code).toBe('cookie_conflict');
    expect(error.action?.href).toBe('https://app.example.com/x');
    expect(error.cookies).toContain(
      '_forward_auth=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Domain=example.com; HttpOnly; Secure; SameSite=Lax',
    );
  });
});
