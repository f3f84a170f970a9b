import { hash } from 'node:crypto';
import { readCookie } from '../http/cookies.ts';
import type { CookieNames } from '../session/cookieNames.ts';

/**
 * The redirect-loop breaker (DESIGN §10). A short-lived cookie counts, per target page, the logins
 * that completed for it, each within `window` of the previous one. When a new login for that page
 * starts although `limit` logins for it have just completed, the session evidently does not stick
 * (cookie domain wrong, cookies blocked, clock skew …): the browser is shown a page naming the
 * likely causes instead of going round again.
 *
 * Only completed logins count, so abandoned attempts, several tabs and slow typists never trip it.
 * The cookie is neither sealed nor secret (a page hash, a count, a time): a replica that cannot
 * unseal another's cookies — itself a classic loop cause — still reads it. At worst a user who
 * edits it shows themselves the page, or skips it.
 */

export interface LoopSettings {
  /** Completed logins for one page after which the next login start shows the page; 0 = off. */
  readonly limit: number;
  /** Each counted login must follow the previous one within this many ms. */
  readonly windowMs: number;
}

interface Entry {
  /** Hash of the target's origin and path (the query may change from round to round). */
  readonly h: string;
  readonly n: number;
  /** Time of the last completed login, ms. */
  readonly t: number;
}

/** Pages tracked at once per browser (loops in two tabs at once are still seen). */
const MAX_ENTRIES = 4;
const ENTRY_RE = /^([0-9a-f]{16})\.(\d{1,4})\.([0-9a-z]{1,11})$/;

export class LoopBreaker {
  readonly cookieName: string;
  readonly #settings: LoopSettings;
  readonly #cookies: CookieNames;

  constructor(settings: LoopSettings, cookies: CookieNames) {
    this.#settings = settings;
    this.#cookies = cookies;
    this.cookieName = `${cookies.session}_loop`;
  }

  get enabled(): boolean {
    return this.#settings.limit > 0;
  }

  /** How many logins for `target` just completed, and whether starting another means a loop. */
  check(cookieHeader: string | undefined, target: string, now: number): { looping: boolean; count: number } {
    if (!this.enabled) return { looping: false, count: 0 };
    const h = pageHash(target);
    const entry = this.#live(cookieHeader, now).find((e) => e.h === h);
    const count = entry?.n ?? 0;
    return { looping: count >= this.#settings.limit, count };
  }

  /** The Set-Cookie recording one more completed login for `target`. */
  completed(cookieHeader: string | undefined, target: string, now: number): string[] {
    if (!this.enabled) return [];
    const h = pageHash(target);
    const entries = this.#live(cookieHeader, now);
    const previous = entries.find((e) => e.h === h);
    const next: Entry = { h, n: Math.min(9999, (previous?.n ?? 0) + 1), t: now };
    return this.#write([next, ...entries.filter((e) => e !== previous)]);
  }

  /** The Set-Cookie forgetting `target` (after the page was shown, so "Try again" starts afresh). */
  forget(cookieHeader: string | undefined, target: string, now: number): string[] {
    if (!this.enabled) return [];
    const h = pageHash(target);
    return this.#write(this.#live(cookieHeader, now).filter((e) => e.h !== h));
  }

  /** Deletes the cookie (sign-out). */
  clear(): string[] {
    return this.#cookies.clear(this.cookieName);
  }

  #live(cookieHeader: string | undefined, now: number): Entry[] {
    const value = readCookie(cookieHeader, this.cookieName);
    if (!value || value.length > 512) return [];
    const out: Entry[] = [];
    for (const part of value.split('~', MAX_ENTRIES)) {
      const m = ENTRY_RE.exec(part);
      if (!m) continue;
      const t = Number.parseInt(m[3] as string, 36);
      if (now - t > this.#settings.windowMs || t > now + this.#settings.windowMs) continue;
      out.push({ h: m[1] as string, n: Number(m[2]), t });
    }
    return out;
  }

  #write(entries: readonly Entry[]): string[] {
    if (entries.length === 0) return this.clear();
    const value = entries
      .slice(0, MAX_ENTRIES)
      .map((e) => `${e.h}.${e.n}.${e.t.toString(36)}`)
      .join('~');
    return [this.#cookies.set(this.cookieName, value, this.#settings.windowMs / 1000)];
  }
}

/** The page a login is for: origin and path; the query is left out. */
function pageHash(target: string): string {
  let page = target;
  try {
    const url = new URL(target);
    page = `${url.origin}${url.pathname}`;
  } catch {
    // not a URL: hash it as it is
  }
  return hash('sha256', page, 'hex').slice(0, 16);
}
