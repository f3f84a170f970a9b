import type { Config } from '../config.ts';
import { serializeCookie } from '../http/cookies.ts';
import { fingerprint } from './crypto.ts';

/**
 * Names and attributes of our cookies (DESIGN §5): HttpOnly, SameSite=Lax, Secure unless
 * COOKIE_SECURE=false, Path=/, and the `__Host-` prefix when the cookie is host-only and secure.
 */
export class CookieNames {
  readonly session: string;
  /** Prefix of the per-flow login cookies. */
  readonly loginPrefix: string;
  readonly #domain: string | undefined;
  readonly #secure: boolean;

  constructor(config: Pick<Config, 'cookieName' | 'cookieDomain' | 'cookieSecure'>) {
    const hostPrefix = config.cookieSecure && !config.cookieDomain ? '__Host-' : '';
    this.session = `${hostPrefix}${config.cookieName}`;
    this.loginPrefix = `${hostPrefix}${config.cookieName}_login_`;
    this.#domain = config.cookieDomain;
    this.#secure = config.cookieSecure;
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
}
