import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseCidrList } from './forward/trust.ts';

/**
 * One typed table of settings (DESIGN §3). `loadConfig` is the only reader of the raw
 * environment: it merges CONFIG_FILE (YAML) < environment < X_FILE, validates everything and
 * reports every problem at once. Secrets never appear in error messages.
 */

export interface CookieSecret {
  /** Stable identifier of the secret, as written in COOKIE_SECRETS (`id:secret`). */
  readonly id: string;
  readonly secret: string;
}

export interface KubeCluster {
  readonly name: string;
  readonly server: string;
  /** Base64 of the PEM CA bundle (caFile is read into it; PEM text is encoded). */
  readonly caData?: string;
  /** The Dex client kubelogin uses (default OIDC_CLIENT_ID). */
  readonly clientId: string;
  /** The API server's --oidc-client-id; default: the audience:server:client_id:X of OIDC_SCOPES, else clientId. */
  readonly audience: string;
  /** kubelogin --oidc-extra-scope values (the cross-client audience scope is added when audience ≠ clientId). */
  readonly extraScopes: readonly string[];
  /** Only for a client declared public (its "secret" is shown to every user). */
  readonly clientSecret?: string;
}

export interface Config {
  readonly issuerUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes: readonly string[];
  readonly allowInsecureHttp: boolean;
  readonly usernameClaim: string;
  readonly usernamePrefix: string;
  readonly groupsClaim: string;
  readonly groupsPrefix: string;
  readonly redirectUrl: string | undefined;
  /** First seals, all unseal. */
  readonly cookieSecrets: readonly CookieSecret[];
  readonly cookieName: string;
  readonly cookieDomain: string | undefined;
  readonly cookieSecure: boolean;
  /** Absolute session lifetime, ms. */
  readonly sessionTtlMs: number;
  /** A session unused this long ends, ms; 0: never. */
  readonly sessionIdleTimeoutMs: number;
  /** Refresh the ID token when it expires within this many ms. */
  readonly refreshSkewMs: number;
  /** On SIGTERM: keep serving (readiness 503) this long, then drain for at most shutdownTimeoutMs. */
  readonly shutdownDelayMs: number;
  readonly shutdownTimeoutMs: number;
  readonly redis: RedisSettings | undefined;
  /** Empty: only the request's own host. Entries starting with '.' match subdomains. */
  readonly allowedRedirectDomains: readonly string[];
  readonly trustedProxies: readonly string[];
  /** Login starts and callbacks per client: `burst` at once, then one every `intervalMs` (0 = off). */
  readonly loginRateLimit: { readonly burst: number; readonly intervalMs: number };
  /** Redirect-loop breaker: `limit` completed logins for one page, each within `windowMs` (0 = off). */
  readonly loginLoop: { readonly limit: number; readonly windowMs: number };
  readonly authzConfig: string | undefined;
  /** A kubeconfig file for the RBAC watch (rbac.kubernetes); undefined: the in-cluster service account. */
  readonly authzKubeconfig: string | undefined;
  /** Bearer pass-through: `aud` must contain one of these (empty: pass-through off). */
  readonly bearerAudiences: readonly string[];
  /** Bearer pass-through: allowed signing algorithms (default RS256). */
  readonly bearerAlgorithms: readonly string[];
  /** Header names (as configured) set on every 2xx. */
  readonly upstreamHeaders: readonly string[];
  /** What `Authorization` carries upstream: the user's ID token, or the pod's token plus Impersonate-*. */
  readonly upstreamAuth: 'id-token' | 'impersonate';
  /** The pod's service-account token file (impersonation mode). */
  readonly serviceAccountTokenPath: string;
  /** Bound on X-Auth-Request-Groups in bytes (whole groups kept); 0: no bound. */
  readonly upstreamGroupsMaxBytes: number;
  readonly port: number;
  readonly logLevel: string;
  readonly kubeClusters: readonly KubeCluster[];
}

export type RedisSettings =
  | { readonly mode: 'single'; readonly url: string; readonly username?: string; readonly password?: string }
  | {
      readonly mode: 'sentinel';
      readonly sentinels: readonly { host: string; port: number }[];
      readonly name: string;
      readonly username?: string;
      readonly password?: string;
      readonly tls: boolean;
    }
  | {
      readonly mode: 'cluster';
      readonly nodes: readonly { host: string; port: number }[];
      readonly username?: string;
      readonly password?: string;
      readonly tls: boolean;
    };

/** One row of the settings table: the README's settings section is generated from these. */
export interface SettingSpec {
  /** Environment variable (also the CONFIG_FILE key; `<name>_FILE` reads it from a file). */
  readonly name: string;
  /** Default as written in the README: a value in backticks, `required`, or words. */
  readonly default: string;
  /** What it does, in Markdown (one line). */
  readonly description: string;
  /** Never printed: redacted from problems, logs and `doctor` output. */
  readonly secret?: boolean;
}

/**
 * Every setting the service reads — the one table (DESIGN §3). Add a row here, then the field to
 * Config and parseConfig; `npm run docs:settings` rewrites the README's table from it.
 */
export const SETTINGS = [
  {
    name: 'OIDC_ISSUER_URL',
    default: 'required',
    description:
      'Dex issuer, exactly as Dex and the API server write it (trailing slash included), e.g. `https://dex.mgmt.example.com/dex`',
  },
  { name: 'OIDC_CLIENT_ID', default: 'required', description: 'the client registered in Dex' },
  {
    name: 'OIDC_CLIENT_SECRET',
    default: 'required',
    description: "that client's secret",
    secret: true,
  },
  {
    name: 'OIDC_SCOPES',
    default: '`openid profile email groups offline_access`',
    description: "add `audience:server:client_id:kubernetes` so the token's `aud` suits the API server",
  },
  {
    name: 'OIDC_ALLOW_INSECURE_HTTP',
    default: '`false`',
    description: 'allow an `http://` issuer (demos and tests only; logged loudly)',
  },
  {
    name: 'OIDC_USERNAME_CLAIM',
    default: '`email`',
    description: 'claim holding the user name, as the API server reads it (`--oidc-username-claim`)',
  },
  {
    name: 'OIDC_USERNAME_PREFIX',
    default: 'none',
    description: 'prefix added to the user name, as the API server adds it (`--oidc-username-prefix`)',
  },
  {
    name: 'OIDC_GROUPS_CLAIM',
    default: '`groups`',
    description: 'claim holding the groups (string or array claim)',
  },
  {
    name: 'OIDC_GROUPS_PREFIX',
    default: 'none',
    description: 'prefix added to every group, e.g. `oidc:` (`--oidc-groups-prefix`)',
  },
  {
    name: 'REDIRECT_URL',
    default: '`<proto>://<host>/oauth2/callback` of each request',
    description: 'one callback URL for a central auth host',
  },
  {
    name: 'COOKIE_SECRET',
    default: 'required',
    description: '≥ 32 random characters that seal the session cookie',
    secret: true,
  },
  {
    name: 'COOKIE_SECRETS',
    default: 'unset',
    description:
      '`id1:secret1,id2:secret2` for rotation, instead of `COOKIE_SECRET`: the first seals, all unseal, old cookies are re-sealed on use',
    secret: true,
  },
  {
    name: 'COOKIE_NAME',
    default: '`_forward_auth`',
    description: 'becomes `__Host-_forward_auth` when the cookie is host-only and secure',
  },
  {
    name: 'COOKIE_DOMAIN',
    default: 'unset (host-only)',
    description: 'e.g. `.example.com` for one login across subdomains',
  },
  { name: 'COOKIE_SECURE', default: '`true`', description: 'mark cookies `Secure`' },
  {
    name: 'SESSION_TTL',
    default: '`168h`',
    description: 'absolute session lifetime; after it the user logs in again',
  },
  {
    name: 'SESSION_IDLE_TIMEOUT',
    default: '`12h`',
    description:
      'a session nobody used for this long ends (signed out everywhere, as by sign-out); `0` = never. Uses are noted in memory and written to Redis at most once per 1/8 of this (≤ 5 min)',
  },
  {
    name: 'REFRESH_SKEW',
    default: '`30s`',
    description: "refresh the ID token this long before it expires (capped at half the token's lifetime)",
  },
  {
    name: 'SHUTDOWN_DELAY',
    default: '`5s`',
    description:
      'on SIGTERM, keep serving this long while `/readyz` answers 503, so Kubernetes takes the pod out of the Service first',
  },
  {
    name: 'SHUTDOWN_TIMEOUT',
    default: '`20s`',
    description: 'then stop accepting and wait at most this long for in-flight requests',
  },
  {
    name: 'REDIS_URL',
    default: 'unset → in-memory store (one replica only; warned at start)',
    description: '`redis://` or `rediss://`',
  },
  {
    name: 'REDIS_SENTINELS',
    default: 'unset',
    description: 'Sentinel instead of `REDIS_URL`: `host:port,host:port`',
  },
  { name: 'REDIS_SENTINEL_NAME', default: 'unset', description: 'the Sentinel master name' },
  {
    name: 'REDIS_CLUSTER_NODES',
    default: 'unset',
    description: 'Redis Cluster instead of `REDIS_URL`: `host:port,…`',
  },
  { name: 'REDIS_USERNAME', default: 'unset', description: 'Redis ACL user' },
  { name: 'REDIS_PASSWORD', default: 'unset', description: 'Redis password', secret: true },
  {
    name: 'ALLOWED_REDIRECT_DOMAINS',
    default: "the request's own host",
    description: 'where `rd` may point: exact hosts, or `.example.com` for the domain and its subdomains',
  },
  {
    name: 'TRUSTED_PROXIES',
    default: 'loopback and private ranges',
    description: 'CIDRs whose `X-Forwarded-*` are believed',
  },
  {
    name: 'LOGIN_RATE_LIMIT_BURST',
    default: '`20`',
    description:
      'login starts (and, separately, callbacks) one client IP (IPv6: its /64) may make at once, shared by all replicas through Redis; `0` turns the limit off',
  },
  {
    name: 'LOGIN_RATE_LIMIT_INTERVAL',
    default: '`6s`',
    description: 'after the burst, one more attempt every this long; beyond it `429` with `Retry-After`',
  },
  {
    name: 'LOGIN_LOOP_LIMIT',
    default: '`5`',
    description:
      'after this many completed logins for one page, each within `LOGIN_LOOP_WINDOW` of the previous, the next one shows a page explaining the redirect loop; `0` turns it off',
  },
  {
    name: 'LOGIN_LOOP_WINDOW',
    default: '`2m`',
    description: 'how close together completed logins must be to count as a loop',
  },
  {
    name: 'AUTHZ_CONFIG',
    default: 'unset → any logged-in user with a verified email',
    description: 'YAML authorization rules',
  },
  {
    name: 'AUTHZ_KUBECONFIG',
    default: "unset → the pod's service account",
    description:
      'kubeconfig file used to watch ClusterRoles/Bindings when `AUTHZ_CONFIG` has `rbac.kubernetes: true` (for running outside the cluster)',
  },
  {
    name: 'BEARER_AUDIENCES',
    default: 'unset → bearer pass-through off',
    description:
      "bearer pass-through: a token's `aud` must contain one of these (e.g. `kubernetes` for tokens minted for the API server); never `OIDC_CLIENT_ID`, and tokens minted for it are refused",
  },
  {
    name: 'BEARER_ALGORITHMS',
    default: '`RS256`',
    description:
      'bearer pass-through: allowed signing algorithms (RS, ES, PS 256/384/512; never `none` or HS*)',
  },
  {
    name: 'UPSTREAM_HEADERS',
    default: '`Authorization,X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Groups`',
    description: 'headers set on a 2xx',
  },
  {
    name: 'UPSTREAM_AUTH',
    default: '`id-token`',
    description:
      '`id-token`: `Authorization` carries the user\'s ID token; `impersonate`: the pod\'s service-account token plus `Impersonate-User`/`Impersonate-Group` (see "Impersonation")',
  },
  {
    name: 'SERVICE_ACCOUNT_TOKEN_PATH',
    default: '`/var/run/secrets/kubernetes.io/serviceaccount/token`',
    description: 'the token sent upstream with `UPSTREAM_AUTH=impersonate` (re-read every minute)',
  },
  {
    name: 'UPSTREAM_GROUPS_MAX_BYTES',
    default: '`8000`',
    description:
      '`X-Auth-Request-Groups` keeps only whole groups within this many bytes (nginx refuses header lines over 8 KB); `0` = no bound',
  },
  {
    name: 'KUBE_CLUSTERS',
    default: 'unset',
    description:
      'YAML or JSON list of `{name, server, caData|caFile, clientId, audience, extraScopes}` for `/kubeconfig` (see "Kubeconfig page")',
  },
  { name: 'PORT', default: '`4180`', description: 'listening port' },
  {
    name: 'LOG_LEVEL',
    default: '`info`',
    description: '`fatal`, `error`, `warn`, `info`, `debug` (one line per decision), `trace` or `silent`',
  },
] as const satisfies readonly SettingSpec[];

export type SettingName = (typeof SETTINGS)[number]['name'];

/** Every setting name the service reads, for X_FILE lookup and CONFIG_FILE validation. */
export const SETTING_NAMES: readonly SettingName[] = SETTINGS.map((s) => s.name);

/** Settings never printed. */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set(
  SETTINGS.filter((s: SettingSpec) => s.secret === true).map((s) => s.name),
);

export const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'groups', 'offline_access'];
export const DEFAULT_UPSTREAM_HEADERS = [
  'Authorization',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
];
export const DEFAULT_TRUSTED_PROXIES = [
  '127.0.0.0/8',
  '::1/128',
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  'fc00::/7',
];

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Go-style durations ("168h", "1h30m", "30s", "500ms") or a bare number of seconds. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(trimmed); m !== null; m = re.exec(trimmed)) {
    total += Number(m[1]) * (units[m[2] as string] as number);
    matched = re.lastIndex;
  }
  return matched === trimmed.length && trimmed.length > 0 ? total : undefined;
}

function list(text: string | undefined): string[] {
  if (text === undefined) return [];
  return text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function parseBool(text: string): boolean | undefined {
  const t = text.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(t)) return true;
  if (['false', '0', 'no', 'off'].includes(t)) return false;
  return undefined;
}

function hostPorts(text: string | undefined): { host: string; port: number }[] | undefined {
  const out: { host: string; port: number }[] = [];
  for (const entry of list(text)) {
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(entry);
    if (!m) return undefined;
    out.push({ host: m[1] as string, port: Number(m[2]) });
  }
  return out;
}

export type RawSettings = Partial<Record<SettingName, string>>;

/**
 * Collects raw settings: CONFIG_FILE (YAML, keys are the setting names), then the environment,
 * then X_FILE files. Problems reading files are reported, never thrown one by one.
 */
export function collectSettings(
  env: Readonly<Record<string, string | undefined>>,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): { raw: RawSettings; problems: string[] } {
  const raw: RawSettings = {};
  const problems: string[] = [];
  const known = new Set<string>(SETTING_NAMES);

  const configFile = env['CONFIG_FILE'];
  if (configFile) {
    try {
      const doc: unknown = parseYaml(readFile(configFile));
      if (doc !== null && doc !== undefined) {
        if (typeof doc !== 'object' || Array.isArray(doc)) {
          problems.push(`CONFIG_FILE ${configFile}: expected a mapping of setting names to values`);
        } else {
          for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
            const name = key.toUpperCase();
            if (!known.has(name)) {
              problems.push(`CONFIG_FILE ${configFile}: unknown setting ${key}`);
              continue;
            }
            if (value === null || value === undefined) continue;
            if (name === 'KUBE_CLUSTERS' && typeof value === 'object') {
              raw.KUBE_CLUSTERS = JSON.stringify(value);
            } else if (Array.isArray(value)) {
              raw[name as SettingName] = value.map(String).join(',');
            } else if (typeof value === 'object') {
              problems.push(`CONFIG_FILE ${configFile}: ${key} must be a scalar or a list`);
            } else {
              raw[name as SettingName] = String(value);
            }
          }
        }
      }
    } catch (error) {
      problems.push(`CONFIG_FILE ${configFile}: cannot be read (${(error as Error).message})`);
    }
  }

  for (const name of SETTING_NAMES) {
    const value = env[name];
    if (value !== undefined && value !== '') raw[name] = value;
    const file = env[`${name}_FILE`];
    if (file) {
      try {
        raw[name] = readFile(file).replace(/\r?\n$/, '');
      } catch (error) {
        problems.push(
          `${name}_FILE ${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
    }
  }
  return { raw, problems };
}

const kubeClustersSchema = z.array(
  z
    .object({
      name: z.string().min(1),
      server: z.url(),
      caData: z.string().optional(),
      caFile: z.string().optional(),
      clientId: z.string().min(1).optional(),
      audience: z.string().min(1).optional(),
      extraScopes: z.array(z.string().regex(/^[\x21-\x7e]+$/)).optional(),
      public: z.boolean().optional(),
      clientSecret: z.string().min(1).optional(),
    })
    .strict(),
);

export const AUDIENCE_SCOPE_PREFIX = 'audience:server:client_id:';
export const DEFAULT_KUBE_EXTRA_SCOPES = ['email', 'groups', 'profile', 'offline_access'];

/** Validates raw settings into a frozen Config, or throws one ConfigError listing every problem. */
export function parseConfig(
  raw: RawSettings,
  initialProblems: readonly string[] = [],
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): Config {
  const problems = [...initialProblems];
  const need = (name: SettingName): string => {
    const v = raw[name];
    if (v === undefined || v.trim() === '') {
      problems.push(`${name} is required`);
      return '';
    }
    return v.trim();
  };
  const bool = (name: SettingName, fallback: boolean): boolean => {
    const v = raw[name];
    if (v === undefined) return fallback;
    const b = parseBool(v);
    if (b === undefined) problems.push(`${name} must be true or false, got "${v}"`);
    return b ?? fallback;
  };
  const duration = (name: SettingName, fallback: string): number => {
    const v = raw[name] ?? fallback;
    const ms = parseDuration(v);
    if (ms === undefined || ms <= 0) {
      problems.push(`${name} must be a duration such as 30s, 10m or 168h, got "${v}"`);
      return parseDuration(fallback) as number;
    }
    return ms;
  };

  const allowInsecureHttp = bool('OIDC_ALLOW_INSECURE_HTTP', false);
  const issuerUrl = need('OIDC_ISSUER_URL');
  if (issuerUrl) {
    let url: URL | undefined;
    try {
      url = new URL(issuerUrl);
    } catch {
      problems.push(`OIDC_ISSUER_URL must be an absolute URL, got "${issuerUrl}"`);
    }
    if (url && url.protocol === 'http:' && !allowInsecureHttp) {
      problems.push(
        'OIDC_ISSUER_URL uses http://; set OIDC_ALLOW_INSECURE_HTTP=true for local demos and tests only',
      );
    } else if (url && url.protocol !== 'http:' && url.protocol !== 'https:') {
      problems.push('OIDC_ISSUER_URL must be an https:// URL');
    }
    if (url && (url.search || url.hash)) problems.push('OIDC_ISSUER_URL must not have a query or fragment');
  }
  const clientId = need('OIDC_CLIENT_ID');
  const clientSecret = need('OIDC_CLIENT_SECRET');

  const scopes = raw.OIDC_SCOPES === undefined ? DEFAULT_SCOPES : list(raw.OIDC_SCOPES);
  if (!scopes.includes('openid')) problems.push('OIDC_SCOPES must include openid');

  let redirectUrl: string | undefined;
  if (raw.REDIRECT_URL !== undefined) {
    try {
      const u = new URL(raw.REDIRECT_URL);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
      redirectUrl = u.toString();
    } catch {
      problems.push(`REDIRECT_URL must be an absolute http(s) URL, got "${raw.REDIRECT_URL}"`);
    }
  }

  // Cookie secrets: COOKIE_SECRETS (id:secret,…) or COOKIE_SECRET. Never echo their values.
  const cookieSecrets: CookieSecret[] = [];
  if (raw.COOKIE_SECRETS !== undefined) {
    const seen = new Set<string>();
    for (const [i, entry] of raw.COOKIE_SECRETS.split(',').entries()) {
      const idx = entry.indexOf(':');
      const id = idx > 0 ? entry.slice(0, idx).trim() : '';
      const secret = idx > 0 ? entry.slice(idx + 1).trim() : '';
      if (!/^[A-Za-z0-9_.-]{1,32}$/.test(id) || secret === '') {
        problems.push(
          `COOKIE_SECRETS entry ${i + 1} must look like id:secret (id of letters, digits, - _ .)`,
        );
        continue;
      }
      if (seen.has(id)) problems.push(`COOKIE_SECRETS id "${id}" appears twice`);
      seen.add(id);
      if (secret.length < 32) problems.push(`COOKIE_SECRETS secret "${id}" is shorter than 32 characters`);
      cookieSecrets.push({ id, secret });
    }
  } else if (raw.COOKIE_SECRET !== undefined) {
    const secret = raw.COOKIE_SECRET.trim();
    if (secret.length < 32) problems.push('COOKIE_SECRET is shorter than 32 characters');
    cookieSecrets.push({ id: '1', secret });
  } else {
    problems.push('COOKIE_SECRET (or COOKIE_SECRETS) is required: at least 32 random characters');
  }

  const cookieName = raw.COOKIE_NAME?.trim() || '_forward_auth';
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cookieName)) {
    problems.push(`COOKIE_NAME may contain only letters, digits, - and _, got "${cookieName}"`);
  }
  let cookieDomain = raw.COOKIE_DOMAIN?.trim() || undefined;
  if (cookieDomain !== undefined) {
    if (!/^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(cookieDomain)) {
      problems.push(`COOKIE_DOMAIN must be a domain such as .example.com, got "${cookieDomain}"`);
    }
    cookieDomain = cookieDomain.toLowerCase();
  }

  const cookieSecure = bool('COOKIE_SECURE', true);
  const sessionTtlMs = duration('SESSION_TTL', '168h');
  const sessionIdleTimeoutMs = parseIdleTimeout(raw, sessionTtlMs, problems);
  const refreshSkewMs = duration('REFRESH_SKEW', '30s');
  const shutdownDelayMs = raw.SHUTDOWN_DELAY === '0' ? 0 : duration('SHUTDOWN_DELAY', '5s');
  const shutdownTimeoutMs = duration('SHUTDOWN_TIMEOUT', '20s');

  const redis = parseRedis(raw, problems);

  const allowedRedirectDomains = list(raw.ALLOWED_REDIRECT_DOMAINS).map((d) => d.toLowerCase());
  for (const d of allowedRedirectDomains) {
    if (!/^\.?[a-z0-9*]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/.test(d)) {
      problems.push(`ALLOWED_REDIRECT_DOMAINS entry "${d}" is not a host name or .suffix`);
    }
  }

  const trustedProxies =
    raw.TRUSTED_PROXIES === undefined ? DEFAULT_TRUSTED_PROXIES : list(raw.TRUSTED_PROXIES);
  try {
    parseCidrList(trustedProxies);
  } catch (error) {
    problems.push(`TRUSTED_PROXIES: ${(error as Error).message}`);
  }

  const count = (name: SettingName, fallback: number): number => {
    const v = raw[name]?.trim();
    if (v === undefined) return fallback;
    if (!/^\d{1,6}$/.test(v)) {
      problems.push(`${name} must be a whole number (0 turns it off), got "${v}"`);
      return fallback;
    }
    return Number(v);
  };
  const loginRateLimit = Object.freeze({
    burst: count('LOGIN_RATE_LIMIT_BURST', 20),
    intervalMs: duration('LOGIN_RATE_LIMIT_INTERVAL', '6s'),
  });
  const loginLoop = Object.freeze({
    limit: count('LOGIN_LOOP_LIMIT', 5),
    windowMs: duration('LOGIN_LOOP_WINDOW', '2m'),
  });

  const upstreamHeaders =
    raw.UPSTREAM_HEADERS === undefined ? DEFAULT_UPSTREAM_HEADERS : list(raw.UPSTREAM_HEADERS);
  for (const h of upstreamHeaders) {
    if (!/^[A-Za-z0-9-]+$/.test(h)) problems.push(`UPSTREAM_HEADERS entry "${h}" is not a header name`);
  }
  const authz = parseAuthzSettings(raw, clientId, problems, readFile);

  const port = Number(raw.PORT ?? '4180');
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    problems.push(`PORT must be a port number, got "${raw.PORT}"`);
  }
  const logLevel = (raw.LOG_LEVEL ?? 'info').toLowerCase();
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    problems.push(
      `LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "${logLevel}"`,
    );
  }

  const kubeClusters: KubeCluster[] = [];
  if (raw.KUBE_CLUSTERS !== undefined) {
    try {
      const parsed = kubeClustersSchema.safeParse(parseYaml(raw.KUBE_CLUSTERS));
      if (!parsed.success) {
        problems.push(
          `KUBE_CLUSTERS: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`,
        );
      } else {
        const audienceScope = scopes.find((s) => s.startsWith(AUDIENCE_SCOPE_PREFIX));
        for (const c of parsed.data) {
          let caData = c.caData?.trim().startsWith('-----BEGIN')
            ? Buffer.from(c.caData.trim()).toString('base64')
            : c.caData;
          if (c.clientSecret !== undefined && c.public !== true) {
            problems.push(
              `KUBE_CLUSTERS ${c.name}: clientSecret is shown to every user in their kubeconfig; set public: true to confirm the client is public, or remove it`,
            );
          }
          if (c.clientSecret !== undefined && c.clientSecret === clientSecret) {
            problems.push(`KUBE_CLUSTERS ${c.name}: clientSecret must not be OIDC_CLIENT_SECRET`);
          }
          if (c.caFile) {
            try {
              caData = Buffer.from(readFile(c.caFile)).toString('base64');
            } catch {
              problems.push(`KUBE_CLUSTERS ${c.name}: caFile ${c.caFile} cannot be read`);
            }
          }
          kubeClusters.push({
            name: c.name,
            server: c.server,
            clientId: c.clientId ?? clientId,
            audience:
              c.audience ?? audienceScope?.slice(AUDIENCE_SCOPE_PREFIX.length) ?? c.clientId ?? clientId,
            extraScopes: Object.freeze([...(c.extraScopes ?? DEFAULT_KUBE_EXTRA_SCOPES)]),
            ...(caData ? { caData } : {}),
            ...(c.public === true && c.clientSecret ? { clientSecret: c.clientSecret } : {}),
          });
        }
      }
    } catch {
      problems.push('KUBE_CLUSTERS must be YAML or JSON: a list of {name, server, caData|caFile, clientId}');
    }
  }

  if (problems.length > 0) throw new ConfigError(problems.map((p) => redactSecrets(p, raw)));

  return Object.freeze({
    issuerUrl,
    clientId,
    clientSecret,
    scopes: Object.freeze([...scopes]),
    allowInsecureHttp,
    usernameClaim: raw.OIDC_USERNAME_CLAIM?.trim() || 'email',
    usernamePrefix: raw.OIDC_USERNAME_PREFIX ?? '',
    groupsClaim: raw.OIDC_GROUPS_CLAIM?.trim() || 'groups',
    groupsPrefix: raw.OIDC_GROUPS_PREFIX ?? '',
    redirectUrl,
    cookieSecrets: Object.freeze(cookieSecrets),
    cookieName,
    cookieDomain,
    cookieSecure,
    sessionTtlMs,
    sessionIdleTimeoutMs,
    refreshSkewMs,
    shutdownDelayMs,
    shutdownTimeoutMs,
    redis,
    allowedRedirectDomains: Object.freeze(allowedRedirectDomains),
    trustedProxies: Object.freeze([...trustedProxies]),
    loginRateLimit,
    loginLoop,
    authzConfig: raw.AUTHZ_CONFIG?.trim() || undefined,
    upstreamHeaders: Object.freeze([...upstreamHeaders]),
    ...authz,
    port,
    logLevel,
    kubeClusters: Object.freeze(kubeClusters),
  });
}

export const BEARER_ALGORITHM_CHOICES = [
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] as const;
export const DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Bearer pass-through, impersonation and upstream-header settings (issue 4). */
function parseAuthzSettings(
  raw: RawSettings,
  clientId: string,
  problems: string[],
  readFile: (path: string) => string,
): Pick<
  Config,
  | 'authzKubeconfig'
  | 'bearerAudiences'
  | 'bearerAlgorithms'
  | 'upstreamAuth'
  | 'serviceAccountTokenPath'
  | 'upstreamGroupsMaxBytes'
> {
  const bearerAudiences = parseBearerAudiences(raw, clientId, problems);
  const bearerAlgorithms = raw.BEARER_ALGORITHMS === undefined ? ['RS256'] : list(raw.BEARER_ALGORITHMS);
  for (const alg of bearerAlgorithms) {
    if (!(BEARER_ALGORITHM_CHOICES as readonly string[]).includes(alg)) {
      problems.push(
        `BEARER_ALGORITHMS entry "${alg}" is not allowed: use ${BEARER_ALGORITHM_CHOICES.join(', ')} (never none or HS*)`,
      );
    }
  }
  if (bearerAlgorithms.length === 0) problems.push('BEARER_ALGORITHMS must name at least one algorithm');

  const upstreamAuth = (raw.UPSTREAM_AUTH?.trim().toLowerCase() || 'id-token') as Config['upstreamAuth'];
  if (upstreamAuth !== 'id-token' && upstreamAuth !== 'impersonate') {
    problems.push(`UPSTREAM_AUTH must be id-token or impersonate, got "${raw.UPSTREAM_AUTH}"`);
  }
  const serviceAccountTokenPath =
    raw.SERVICE_ACCOUNT_TOKEN_PATH?.trim() || DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH;
  if (upstreamAuth === 'impersonate') {
    try {
      if (readFile(serviceAccountTokenPath).trim() === '') {
        problems.push(`SERVICE_ACCOUNT_TOKEN_PATH ${serviceAccountTokenPath} is empty`);
      }
    } catch (error) {
      problems.push(
        `SERVICE_ACCOUNT_TOKEN_PATH ${serviceAccountTokenPath} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); UPSTREAM_AUTH=impersonate needs the pod's service-account token`,
      );
    }
  }

  let upstreamGroupsMaxBytes = 8000;
  const rawMax = raw.UPSTREAM_GROUPS_MAX_BYTES?.trim();
  if (rawMax !== undefined) {
    if (/^\d{1,7}$/.test(rawMax)) upstreamGroupsMaxBytes = Number(rawMax);
    else problems.push(`UPSTREAM_GROUPS_MAX_BYTES must be a number of bytes (0: no bound), got "${rawMax}"`);
  }

  return {
    authzKubeconfig: raw.AUTHZ_KUBECONFIG?.trim() || undefined,
    bearerAudiences: Object.freeze(bearerAudiences),
    bearerAlgorithms: Object.freeze(bearerAlgorithms),
    upstreamAuth,
    serviceAccountTokenPath,
    upstreamGroupsMaxBytes,
  };
}

/** SESSION_IDLE_TIMEOUT: a duration, or 0 for none (default 12h; never beyond SESSION_TTL). */
function parseIdleTimeout(raw: RawSettings, sessionTtlMs: number, problems: string[]): number {
  const text = raw.SESSION_IDLE_TIMEOUT?.trim();
  if (text === undefined || text === '') return Math.min(12 * 3_600_000, sessionTtlMs);
  if (/^0+(ms|s|m|h|d)?$/.test(text)) return 0;
  const ms = parseDuration(text);
  if (ms === undefined || ms < 1_000) {
    problems.push(`SESSION_IDLE_TIMEOUT must be a duration of at least 1s (or 0 for none), got "${text}"`);
    return 0;
  }
  return ms;
}

/**
 * BEARER_AUDIENCES: unset = no bearer pass-through. The gateway's own client id is refused: its ID
 * tokens go to every upstream, so accepting them would let one dashboard act as its users on all.
 */
function parseBearerAudiences(raw: RawSettings, clientId: string, problems: string[]): string[] {
  if (raw.BEARER_AUDIENCES === undefined) return [];
  const audiences = list(raw.BEARER_AUDIENCES);
  if (audiences.length === 0) problems.push('BEARER_AUDIENCES must name at least one audience');
  if (clientId !== '' && audiences.includes(clientId)) {
    problems.push(
      'BEARER_AUDIENCES must not contain OIDC_CLIENT_ID: the gateway hands its ID tokens to every upstream, so any dashboard could replay them as bearer tokens on every other; use the audience of the tokens your API clients get (e.g. kubernetes)',
    );
  }
  return audiences;
}

function parseRedis(raw: RawSettings, problems: string[]): RedisSettings | undefined {
  const username = raw.REDIS_USERNAME || undefined;
  const password = raw.REDIS_PASSWORD || undefined;
  const auth = { ...(username ? { username } : {}), ...(password ? { password } : {}) };
  const modes = [raw.REDIS_URL, raw.REDIS_SENTINELS, raw.REDIS_CLUSTER_NODES].filter((v) => v !== undefined);
  if (modes.length > 1) {
    problems.push('set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES');
    return undefined;
  }
  if (raw.REDIS_URL !== undefined) {
    try {
      const u = new URL(raw.REDIS_URL);
      if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error('scheme');
    } catch {
      problems.push('REDIS_URL must be a redis:// or rediss:// URL');
      return undefined;
    }
    return { mode: 'single', url: raw.REDIS_URL, ...auth };
  }
  if (raw.REDIS_SENTINELS !== undefined) {
    const sentinels = hostPorts(raw.REDIS_SENTINELS);
    if (!sentinels || sentinels.length === 0) {
      problems.push('REDIS_SENTINELS must be a list of host:port');
      return undefined;
    }
    if (!raw.REDIS_SENTINEL_NAME) {
      problems.push('REDIS_SENTINEL_NAME is required with REDIS_SENTINELS');
      return undefined;
    }
    return { mode: 'sentinel', sentinels, name: raw.REDIS_SENTINEL_NAME, tls: false, ...auth };
  }
  if (raw.REDIS_CLUSTER_NODES !== undefined) {
    const nodes = hostPorts(raw.REDIS_CLUSTER_NODES);
    if (!nodes || nodes.length === 0) {
      problems.push('REDIS_CLUSTER_NODES must be a list of host:port');
      return undefined;
    }
    return { mode: 'cluster', nodes, tls: false, ...auth };
  }
  return undefined;
}

/** Defence in depth: no problem text may contain a secret's value. */
function redactSecrets(text: string, raw: RawSettings): string {
  let out = text;
  for (const name of SECRET_SETTINGS) {
    const value = raw[name as SettingName];
    if (!value) continue;
    for (const part of value.split(/[,:]/)) {
      if (part.length >= 8) out = out.split(part).join('[redacted]');
    }
  }
  return out;
}

/** Reads and validates configuration from an environment. */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>>,
  readFile?: (path: string) => string,
): Config {
  const { raw, problems } = collectSettings(env, readFile);
  return parseConfig(raw, problems, readFile);
}
