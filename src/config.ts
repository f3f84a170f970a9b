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
  readonly caData?: string;
  readonly clientId: string;
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
  /** Refresh the ID token when it expires within this many ms. */
  readonly refreshSkewMs: number;
  readonly redis: RedisSettings | undefined;
  /** Empty: only the request's own host. Entries starting with '.' match subdomains. */
  readonly allowedRedirectDomains: readonly string[];
  readonly trustedProxies: readonly string[];
  readonly authzConfig: string | undefined;
  /** Header names (as configured) set on every 2xx. */
  readonly upstreamHeaders: readonly string[];
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

/** Every setting name the service reads, for X_FILE lookup and CONFIG_FILE validation. */
export const SETTING_NAMES = [
  'OIDC_ISSUER_URL',
  'OIDC_CLIENT_ID',
  'OIDC_CLIENT_SECRET',
  'OIDC_SCOPES',
  'OIDC_ALLOW_INSECURE_HTTP',
  'OIDC_USERNAME_CLAIM',
  'OIDC_USERNAME_PREFIX',
  'OIDC_GROUPS_CLAIM',
  'OIDC_GROUPS_PREFIX',
  'REDIRECT_URL',
  'COOKIE_SECRET',
  'COOKIE_SECRETS',
  'COOKIE_NAME',
  'COOKIE_DOMAIN',
  'COOKIE_SECURE',
  'SESSION_TTL',
  'REFRESH_SKEW',
  'REDIS_URL',
  'REDIS_SENTINELS',
  'REDIS_SENTINEL_NAME',
  'REDIS_CLUSTER_NODES',
  'REDIS_USERNAME',
  'REDIS_PASSWORD',
  'ALLOWED_REDIRECT_DOMAINS',
  'TRUSTED_PROXIES',
  'AUTHZ_CONFIG',
  'UPSTREAM_HEADERS',
  'KUBE_CLUSTERS',
  'PORT',
  'LOG_LEVEL',
] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

const SECRET_SETTINGS: ReadonlySet<string> = new Set([
  'OIDC_CLIENT_SECRET',
  'COOKIE_SECRET',
  'COOKIE_SECRETS',
  'REDIS_PASSWORD',
]);

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
  z.object({
    name: z.string().min(1),
    server: z.url(),
    caData: z.string().optional(),
    caFile: z.string().optional(),
    clientId: z.string().min(1).optional(),
  }),
);

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
  const refreshSkewMs = duration('REFRESH_SKEW', '30s');

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

  const upstreamHeaders =
    raw.UPSTREAM_HEADERS === undefined ? DEFAULT_UPSTREAM_HEADERS : list(raw.UPSTREAM_HEADERS);
  for (const h of upstreamHeaders) {
    if (!/^[A-Za-z0-9-]+$/.test(h)) problems.push(`UPSTREAM_HEADERS entry "${h}" is not a header name`);
  }

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
        for (const c of parsed.data) {
          let caData = c.caData;
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
            ...(caData ? { caData } : {}),
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
    refreshSkewMs,
    redis,
    allowedRedirectDomains: Object.freeze(allowedRedirectDomains),
    trustedProxies: Object.freeze([...trustedProxies]),
    authzConfig: raw.AUTHZ_CONFIG?.trim() || undefined,
    upstreamHeaders: Object.freeze([...upstreamHeaders]),
    port,
    logLevel,
    kubeClusters: Object.freeze(kubeClusters),
  });
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
