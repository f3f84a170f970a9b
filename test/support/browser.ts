/**
 * A scripted, browser-like HTTP client for tests: a cookie jar, manual redirects, loopback only.
 *
 * Any URL whose host is `localhost`, ends in `.localhost`, or is 127.0.0.1 / [::1] connects to 127.0.0.1
 * (Node cannot resolve `*.localhost`); the URL's host:port goes into the Host header. Anything else throws.
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface Reply {
  status: number;
  /** Fetch-style headers: `get(name)`, `getSetCookie()`. */
  headers: Headers;
  /** Absolute Location (resolved against `url`), when present. */
  location?: string;
  body: string;
  /** The URL that was requested. */
  url: string;
  json<T = unknown>(): T;
}

export interface BrowserOptions {
  /** Send top-level-navigation headers (Accept text/html, Sec-Fetch-*, Chrome User-Agent). Default false. */
  navigation?: boolean;
  /** Per-request timeout in ms, default 30000. */
  timeoutMs?: number;
}

export const CHROME_USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36';
const NAV_ACCEPT =
  'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7';

interface StoredCookie {
  name: string;
  value: string;
  domain: string;
  hostOnly: boolean;
  path: string;
  /** ms since epoch; Infinity for session cookies */
  expires: number;
  secure: boolean;
  httpOnly: boolean;
  sameSite: string | undefined;
  created: number;
}

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '127.0.0.1' || h === '[::1]' || h === '::1';
}

/** Browsers treat http://localhost, http://*.localhost and loopback IPs as secure contexts. */
function isTrustworthy(url: URL): boolean {
  return url.protocol === 'https:' || isLoopbackHost(url.hostname);
}

function isIp(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.includes(':') || host.startsWith('[');
}

function defaultPath(url: URL): string {
  const p = url.pathname;
  if (!p.startsWith('/')) return '/';
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function domainMatches(host: string, domain: string): boolean {
  return host === domain || (!isIp(host) && host.endsWith(`.${domain}`));
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath.charAt(cookiePath.length) === '/';
}

/** A crude "site": scheme plus the last two host labels (IPs are their own site). */
function siteOf(url: URL): string {
  const host = url.hostname.toLowerCase();
  if (isIp(host)) return `${url.protocol}//${host}`;
  const labels = host.split('.');
  return `${url.protocol}//${labels.slice(-2).join('.')}`;
}

type FetchSite = 'none' | 'same-origin' | 'same-site' | 'cross-site';
const SITE_RANK: Record<FetchSite, number> = { none: 0, 'same-origin': 1, 'same-site': 2, 'cross-site': 3 };

function fetchSite(from: URL, to: URL): FetchSite {
  if (from.origin === to.origin) return 'same-origin';
  if (siteOf(from) === siteOf(to)) return 'same-site';
  return 'cross-site';
}

export class CookieJar {
  private cookies: StoredCookie[] = [];
  private counter = 0;

  /** Store one Set-Cookie header value received from `url`. Returns false if the cookie was rejected. */
  set(url: string | URL, header: string): boolean {
    const u = typeof url === 'string' ? new URL(url) : url;
    const parts = header.split(';');
    const first = parts.shift() ?? '';
    const eq = first.indexOf('=');
    if (eq === -1) return false;
    const name = first.slice(0, eq).trim();
    const value = first.slice(eq + 1).trim();
    if (!name) return false;

    const host = u.hostname.toLowerCase();
    let domain: string | undefined;
    let path: string | undefined;
    let expires = Number.POSITIVE_INFINITY;
    let maxAgeSeen = false;
    let secure = false;
    let httpOnly = false;
    let sameSite: string | undefined;
    for (const part of parts) {
      const i = part.indexOf('=');
      const key = (i === -1 ? part : part.slice(0, i)).trim().toLowerCase();
      const val = i === -1 ? '' : part.slice(i + 1).trim();
      switch (key) {
        case 'domain': {
          const d = val.replace(/^\./, '').toLowerCase();
          if (d) domain = d;
          break;
        }
        case 'path':
          path = val.startsWith('/') ? val : undefined;
          break;
        case 'max-age': {
          const n = Number.parseInt(val, 10);
          if (/^-?\d+$/.test(val) && Number.isFinite(n)) {
            maxAgeSeen = true;
            expires = n <= 0 ? 0 : Date.now() + n * 1000;
          }
          break;
        }
        case 'expires': {
          if (!maxAgeSeen) {
            const t = Date.parse(val);
            if (!Number.isNaN(t)) expires = t;
          }
          break;
        }
        case 'secure':
          secure = true;
          break;
        case 'httponly':
          httpOnly = true;
          break;
        case 'samesite':
          sameSite = val.toLowerCase();
          break;
        default:
          break;
      }
    }

    if (domain !== undefined && !domainMatches(host, domain)) return false;
    if (domain !== undefined && isIp(host) && domain !== host) return false;
    if (secure && !isTrustworthy(u)) return false;
    if (name.startsWith('__Secure-') && !secure) return false;
    if (name.startsWith('__Host-') && (!secure || domain !== undefined || path !== '/')) return false;

    const cookie: StoredCookie = {
      name,
      value,
      domain: domain ?? host,
      hostOnly: domain === undefined,
      path: path ?? defaultPath(u),
      expires,
      secure,
      httpOnly,
      sameSite,
      created: this.counter++,
    };
    const existing = this.cookies.findIndex(
      (c) => c.name === cookie.name && c.domain === cookie.domain && c.path === cookie.path,
    );
    if (existing !== -1) {
      const old = this.cookies[existing];
      if (old) cookie.created = old.created;
      this.cookies.splice(existing, 1);
    }
    if (cookie.expires <= Date.now()) return true; // deletion
    this.cookies.push(cookie);
    return true;
  }

  /** Cookies that would be sent to `url`, in Cookie-header order. */
  get(url: string | URL): { name: string; value: string }[] {
    const u = typeof url === 'string' ? new URL(url) : url;
    const host = u.hostname.toLowerCase();
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires > now);
    return this.cookies
      .filter((c) => (c.hostOnly ? c.domain === host : domainMatches(host, c.domain)))
      .filter((c) => pathMatches(u.pathname || '/', c.path))
      .filter((c) => !c.secure || isTrustworthy(u))
      .sort((a, b) => b.path.length - a.path.length || a.created - b.created)
      .map((c) => ({ name: c.name, value: c.value }));
  }

  header(url: string | URL): string | undefined {
    const list = this.get(url);
    return list.length ? list.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }

  clear(): void {
    this.cookies = [];
  }
}

function toHeaders(res: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.append(name, value);
  }
  return headers;
}

export class Browser {
  readonly jar = new CookieJar();
  private readonly navigation: boolean;
  private readonly timeoutMs: number;

  constructor(opts: BrowserOptions = {}) {
    this.navigation = opts.navigation ?? false;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** One GET, no redirect following; cookies from the jar are sent and Set-Cookie is stored. */
  get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
    return this.request('GET', url, undefined, { ...this.defaultHeaders('GET', 'none'), ...headers });
  }

  /**
   * One GET whose request-target is sent exactly as written (`/./admin`, `/admin#x`, `//admin`),
   * which a URL would normalise away: what a script, not a browser, can send.
   */
  getRaw(origin: string, target: string, headers: Record<string, string> = {}): Promise<Reply> {
    return this.request(
      'GET',
      `${origin}/`,
      undefined,
      { ...this.defaultHeaders('GET', 'none'), ...headers },
      target,
    );
  }

  /** One form POST (application/x-www-form-urlencoded), no redirect following. */
  post(url: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> {
    const body = new URLSearchParams(form).toString();
    return this.request('POST', url, body, {
      ...this.defaultHeaders('POST', 'same-origin'),
      origin: new URL(url).origin,
      'content-type': 'application/x-www-form-urlencoded',
      ...headers,
    });
  }

  /** GET `url` and follow 301/302/303/307/308 redirects with the jar. `chain` holds every reply, final last. */
  async follow(
    url: string,
    opts: { maxRedirects?: number; headers?: Record<string, string> } = {},
  ): Promise<{ final: Reply; chain: Reply[] }> {
    const first = await this.get(url, opts.headers);
    return this.continueFrom(first, opts);
  }

  /** Follow redirects starting from an already received reply (e.g. the answer to a POST). */
  async continueFrom(
    reply: Reply,
    opts: { maxRedirects?: number; headers?: Record<string, string> } = {},
  ): Promise<{ final: Reply; chain: Reply[] }> {
    const max = opts.maxRedirects ?? 20;
    const chain: Reply[] = [reply];
    let current = reply;
    let site: FetchSite = 'none';
    let redirects = 0;
    while ([301, 302, 303, 307, 308].includes(current.status) && current.location) {
      if (redirects++ >= max) throw new Error(`too many redirects (> ${max}) starting at ${chain[0]?.url}`);
      const next = current.location;
      const step = fetchSite(new URL(current.url), new URL(next));
      if (SITE_RANK[step] > SITE_RANK[site]) site = step;
      current = await this.request('GET', next, undefined, {
        ...this.defaultHeaders('GET', site),
        ...opts.headers,
      });
      chain.push(current);
    }
    return { final: current, chain };
  }

  cookies(url: string): { name: string; value: string }[] {
    return this.jar.get(url);
  }

  setCookie(url: string, cookie: string): void {
    this.jar.set(url, cookie);
  }

  clear(): void {
    this.jar.clear();
  }

  private defaultHeaders(method: string, site: FetchSite): Record<string, string> {
    if (!this.navigation) {
      return { accept: '*/*', 'user-agent': 'dex-forward-auth-tests/1' };
    }
    const h: Record<string, string> = {
      accept: NAV_ACCEPT,
      'accept-language': 'en-US,en;q=0.9',
      'user-agent': CHROME_USER_AGENT,
      'sec-fetch-mode': 'navigate',
      'sec-fetch-dest': 'document',
      'sec-fetch-site': site,
      'sec-fetch-user': '?1',
      'upgrade-insecure-requests': '1',
    };
    if (method !== 'GET' && method !== 'HEAD') h['cache-control'] = 'max-age=0';
    return h;
  }

  private request(
    method: string,
    url: string,
    body: string | undefined,
    headers: Record<string, string>,
    rawTarget?: string,
  ): Promise<Reply> {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new Error(`Browser: unsupported scheme in ${url}`);
    if (!isLoopbackHost(u.hostname))
      throw new Error(`Browser: refusing to connect to non-loopback host ${u.host}`);
    const secure = u.protocol === 'https:';
    const port = u.port ? Number(u.port) : secure ? 443 : 80;

    const out: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(headers)) {
      if (v !== '') out[k.toLowerCase()] = v;
    }
    out['host'] = u.host;
    const cookie = this.jar.header(u);
    if (cookie !== undefined && out['cookie'] === undefined) out['cookie'] = cookie;
    const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
    if (payload) out['content-length'] = String(payload.length);

    const requestFn = secure ? httpsRequest : httpRequest;
    return new Promise<Reply>((resolve, reject) => {
      const req = requestFn(
        {
          host: u.hostname.startsWith('[') || u.hostname === '::1' ? '::1' : '127.0.0.1',
          port,
          method,
          path: rawTarget ?? `${u.pathname}${u.search}`,
          headers: out,
          agent: false,
          ...(secure
            ? { servername: isIp(u.hostname) ? undefined : u.hostname, rejectUnauthorized: false }
            : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            for (const sc of res.headers['set-cookie'] ?? []) this.jar.set(u, sc);
            const text = Buffer.concat(chunks).toString('utf8');
            const loc = res.headers.location;
            const reply: Reply = {
              status: res.statusCode ?? 0,
              headers: toHeaders(res),
              body: text,
              url: u.href,
              json<T>() {
                return JSON.parse(text) as T;
              },
            };
            if (loc) reply.location = new URL(loc, u).href;
            resolve(reply);
          });
        },
      );
      req.setTimeout(this.timeoutMs, () =>
        req.destroy(new Error(`Browser: timeout after ${this.timeoutMs} ms: ${url}`)),
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/** The value a reply's Set-Cookie gives cookie `name` (its attributes left out), or undefined. */
export function setCookieValue(reply: Pick<Reply, 'headers'>, name: string): string | undefined {
  const line = reply.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));
  if (line === undefined) return undefined;
  const end = line.indexOf(';');
  return line.slice(name.length + 1, end === -1 ? undefined : end);
}

/** The action URL of the Dex stand-in's login form in `reply`, if it is one. */
export function dexLoginFormAction(reply: Reply): string | undefined {
  if (reply.status !== 200 && reply.status !== 401) return undefined;
  const m = /<form[^>]*\baction="([^"]*\/interaction\/[^"]*)"/i.exec(reply.body);
  if (!m?.[1]) return undefined;
  const action = m[1].replaceAll('&amp;', '&');
  return new URL(action, reply.url).href;
}

/**
 * Follow redirects from `startUrl`; when the stand-in's /interaction login form shows up, POST the
 * credentials and keep following to the end. `chain` holds every reply in order; `final` is the last one
 * (the 401 form again when the password is wrong).
 */
export async function loginThroughDex(
  browser: Browser,
  startUrl: string,
  user: { login: string; password: string },
): Promise<{ final: Reply; chain: Reply[] }> {
  const first = await browser.follow(startUrl);
  const action = dexLoginFormAction(first.final);
  if (!action) return first;
  const posted = await browser.post(action, { login: user.login, password: user.password });
  const rest = await browser.continueFrom(posted);
  return { final: rest.final, chain: [...first.chain, ...rest.chain] };
}
