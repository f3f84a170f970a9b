import type { OriginalRequest } from './original.ts';
import { normaliseHost } from './original.ts';

/**
 * The one guard for every post-login, post-logout and start `rd` URL (DESIGN §10).
 * Accepts a path on the current host ("/x", not "//x" or "/\x") or an absolute http(s) URL whose
 * host is the request's own host or matches ALLOWED_REDIRECT_DOMAINS (exact host, or ".suffix" —
 * also written "*.suffix" — for the domain and its subdomains). Anything odd is refused rather than
 * repaired: control characters, whitespace, backslashes, userinfo, non-ASCII (look-alike dots),
 * percent-encoding in the authority or at the start of the path (encoded separators), hosts with
 * characters no DNS name has, other schemes. What comes out is the WHATWG-normalised absolute URL,
 * so the browser is sent exactly where the check looked.
 */
export class ReturnUrlGuard {
  readonly #allowed: readonly string[];

  constructor(allowedDomains: readonly string[]) {
    this.#allowed = allowedDomains.map((d) => {
      const lower = d.toLowerCase();
      return lower.startsWith('*.') ? lower.slice(1) : lower;
    });
  }

  /** The normalised absolute URL when `candidate` is safe, else undefined. */
  check(candidate: string | undefined | null, original: OriginalRequest): string | undefined {
    if (!candidate || candidate.length > 4096) return undefined;
    // Printable ASCII only: no controls, spaces, backslashes or look-alike characters.
    if (!/^[\x21-\x7e]+$/.test(candidate) || candidate.includes('\\')) return undefined;

    let absolute: string;
    if (candidate.startsWith('/')) {
      // "//x" is another host; "/%2f…" and "/%5c…" become one when something decodes them.
      if (candidate.startsWith('//') || /^\/%(2f|5c)/i.test(candidate)) return undefined;
      absolute = `${original.proto}://${original.host}${candidate}`;
    } else if (/^https?:\/\/[^/]/i.test(candidate)) {
      absolute = candidate;
      // The authority must not hide separators or userinfo behind encodings.
      const authority = candidate.slice(candidate.indexOf('//') + 2).split(/[/?#]/, 1)[0] ?? '';
      if (/[%@]/.test(authority)) return undefined;
    } else {
      return undefined;
    }

    let url: URL;
    try {
      url = new URL(absolute);
    } catch {
      return undefined;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    if (url.username || url.password) return undefined;
    if (!SAFE_HOSTNAME.test(url.hostname)) return undefined;
    const host = normaliseHost(url.host, url.protocol === 'https:' ? 'https' : 'http');
    if (!this.allowsHost(host, original.host)) return undefined;
    // Drop a trailing dot ("app.example.com.") so the URL names the host the check allowed.
    if (url.hostname.endsWith('.')) url.hostname = url.hostname.slice(0, -1);
    return url.href;
  }

  allowsHost(host: string, ownHost: string): boolean {
    if (host === ownHost) return true;
    const hostname = host.replace(/:\d+$/, '');
    for (const entry of this.#allowed) {
      if (entry.startsWith('.')) {
        const base = entry.slice(1).replace(/:\d+$/, '');
        const portPart = /:\d+$/.test(entry) ? entry.slice(entry.lastIndexOf(':')) : undefined;
        if (portPart !== undefined && !host.endsWith(portPart)) continue;
        if (hostname === base || hostname.endsWith(`.${base}`)) return true;
      } else if (entry.includes(':') ? host === entry : hostname === entry) {
        return true;
      }
    }
    return false;
  }
}

/** A DNS name of non-empty labels (optionally one trailing dot), or a bracketed IPv6 literal. */
const SAFE_HOSTNAME =
  /^(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*\.?|\[[0-9a-f:.]+\])$/;
