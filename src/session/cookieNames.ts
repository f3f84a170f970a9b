import type { Config } from '../config.ts';
import { AppError } from '../errors.ts';
import { type CookieLookup, readUniqueCookie, serializeCookie } from '../http/cookies.ts';
import { fingerprint } from './crypto.ts';

/**
 * Names and attributes of our cookies (DESIGN §5): HttpOnly, SameSite=Lax, Secure unless
 * COOKIE_SECURE=false, Path=/, and the `__Host-` prefix when the cookie is host-only and secure.
 *
 * What a sibling subdomain (evil.example.com next to app.example.com) can plant, and what we then
 * do (DESIGN §10, issue 11 item 5):
 * - a cookie of any name with `Domain=example.com`, or on a more specific `Path` so that the
 *   browser sends it FIRST: a second session cookie. A request carrying the session cookie twice
 *   is refused (`cookie_conflict`), never decided by whichever comes first.
 * - a cookie whose VALUE reads like one of ours (`x=1 __Host-_forward_auth=…`): the header is
 *   parsed per RFC 6265, so that is a cookie named `x`.
 * - never a `__Host-` cookie (browsers refuse `Domain`, non-`Secure` and nameless `__Host-…`
 *   cookies), but the same name without the prefix: with the `__Host-` name in use, a request that
 *   also carries the bare name is refused as well — nobody we trust sets it.
 */
export class CookieNames {
  readonly session: string;
  /** Prefix of the per-flow login cookies. */
  readonly loginPrefix: string;
  /** The session cookie's name without `__Host-`, when the prefix is in use (a planted look-alike). */
  readonly #shadow: string | undefined;
  readonly #domain: string | undefined;
  readonly #secure: boolean;

  constructor(config: Pick<Config, 'cookieName' | 'cookieDomain' | 'cookieSecure'>) {
    const hostPrefix = config.cookieSecure && !config.cookieDomain ? '__Host-' : '';
    this.session = `${hostPrefix}${config.cookieName}`;
    this.loginPrefix = `${hostPrefix}${config.cookieName}_login_`;
    this.#shadow = hostPrefix ? config.cookieName : undefined;
    this.#domain = config.cookieDomain;
    this.#secure = config.cookieSecure;
  }

  /** True when cookies are host-only (no COOKIE_DOMAIN): a session then belongs to one host. */
  get hostOnly(): boolean {
    return this.#domain === undefined;
  }

  /**
   * The request's session cookie: its value, undefined when there is none, CONFLICT when the
   * header carries it more than once (or, with `__Host-`, also the bare name). Allocation-light:
   * it runs on every request.
   */
  readSession(header: string | undefined): CookieLookup {
    return readUniqueCookie(header, this.session, this.#shadow);
  }

  /**
   * The answer to a request whose session cookie is ambiguous: 400 with a page, deleting every
   * copy we can reach (ours, and the planted ones on the parent domains and on the path's
   * prefixes), and a link to try again. Never a login: it would not fix it.
   */
  conflict(request: { readonly host: string; readonly path: string; readonly url: string }): AppError {
    return new AppError(
      'cookie_conflict',
      'Your browser sent this site’s sign-in cookie more than once, so we cannot tell who you are. Another site under the same parent domain may have set one. We have asked your browser to delete them; if this page comes back, delete this site’s cookies.',
      {
        detail: 'more than one session cookie in the request',
        cookies: this.clearEverywhere(request.host, request.path),
        action: { href: request.url, label: 'Try again' },
      },
    );
  }

  /** The login cookie of one flow: its name is derived from the state. */
  login(state: string): string {
    return this.loginPrefix + fingerprint(state).slice(0, 12).replace(/[-_]/g, 'x');
  }

  set(name: string, value: string, maxAgeSeconds: number): string {
    return serializeCookie(name, value, {
      domain: this.#domain,
      secure: this.#secure,
      maxAge: maxAgeSeconds,
    });
  }

  /** Deletes a cookie everywhere we may have set it: with our Domain and host-only. */
  clear(name: string): string[] {
    const out = [serializeCookie(name, '', { domain: this.#domain, secure: this.#secure, maxAge: 0 })];
    if (this.#domain && !name.startsWith('__Host-')) {
      out.push(serializeCookie(name, '', { secure: this.#secure, maxAge: 0 }));
    }
    return out;
  }

  /**
   * Deletions of the session cookie (and its bare look-alike) wherever a sibling could have put a
   * copy that this request carries: host-only and on each parent domain, on `/` and on each prefix
   * of the request's path (a cookie is only sent where its Path is such a prefix). Bounded.
   */
  clearEverywhere(host: string, path: string): string[] {
    const hostname = host.replace(/:\d+$/, '');
    const labels = /^[\d.]+$|^\[/.test(hostname) ? [] : hostname.split('.');
    const domains: (string | undefined)[] = [undefined];
    // A browser ignores a Domain that is a public suffix; so asking for one is harmless.
    for (let i = 1; i < labels.length && domains.length < 5; i++) domains.push(labels.slice(i).join('.'));
    if (this.#domain && !domains.includes(this.#domain.replace(/^\./, ''))) domains.push(this.#domain);
    const paths = ['/'];
    // Only plain segments: anything else could not be written into a Path attribute safely.
    const segments: string[] = [];
    for (const segment of path.split('/').filter(Boolean)) {
      if (segments.length === 4 || !/^[\w.~%-]{1,64}$/.test(segment)) break;
      segments.push(segment);
      paths.push(`/${segments.join('/')}`);
    }
    const out: string[] = [];
    for (const name of [this.session, this.#shadow]) {
      if (name === undefined) continue;
      for (const domain of name.startsWith('__Host-') ? [undefined] : domains) {
        for (const p of name.startsWith('__Host-') ? ['/'] : paths) {
          out.push(serializeCookie(name, '', { domain, secure: this.#secure, maxAge: 0, path: p }));
        }
      }
    }
    return out;
  }
}
