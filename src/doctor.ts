import { randomBytes } from 'node:crypto';
import { type Config, cookieSecretProblem } from './config.ts';
import { describeError } from './errors.ts';
import { checkAuthenticationConfiguration } from './identity/doctor.ts';
import { preflight } from './preflight.ts';
import { createRedisClient, RedisStore } from './session/redisStore.ts';

/**
 * `dex-forward-auth doctor`: loads the configuration exactly as `serve` does, then checks it live
 * against the identity provider and Redis, and prints every problem it finds (DESIGN §9). It
 * never prints a secret. Exit status: 0 when nothing is wrong (warnings allowed), 1 otherwise.
 */

export type CheckStatus = 'ok' | 'problem' | 'warning' | 'skipped';

export interface Check {
  /** Short topic, e.g. "discovery", "client credentials". */
  readonly topic: string;
  readonly status: CheckStatus;
  readonly message: string;
}

export interface DoctorReport {
  readonly checks: readonly Check[];
  readonly problems: number;
  readonly warnings: number;
}

export interface DoctorOptions {
  readonly readFile?: (path: string) => string;
  /** Per network call, ms (default 5000). */
  readonly timeoutMs?: number;
  /** Extra protected hosts whose per-host callback URL should be checked (`--host`). */
  readonly hosts?: readonly string[];
  /** A sample JWT to map (`--token`); never printed. */
  readonly token?: string;
  /** An AuthenticationConfiguration to check instead of AUTHENTICATION_CONFIG (`--authentication-config`). */
  readonly authenticationConfig?: string;
}

interface Discovery {
  readonly issuer?: unknown;
  readonly authorization_endpoint?: unknown;
  readonly token_endpoint?: unknown;
  readonly jwks_uri?: unknown;
  readonly scopes_supported?: unknown;
  readonly code_challenge_methods_supported?: unknown;
  readonly token_endpoint_auth_methods_supported?: unknown;
}

class Checks {
  readonly list: Check[] = [];
  ok(topic: string, message: string): void {
    this.list.push({ topic, status: 'ok', message });
  }
  problem(topic: string, message: string): void {
    this.list.push({ topic, status: 'problem', message });
  }
  warning(topic: string, message: string): void {
    this.list.push({ topic, status: 'warning', message });
  }
  skipped(topic: string, message: string): void {
    this.list.push({ topic, status: 'skipped', message });
  }
}

/** The real cause under a failed fetch: `fetch failed: connect ECONNREFUSED 127.0.0.1:5556`. */
const reason = (error: unknown): string => {
  const e = error as { name?: string };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  return describeError(error);
};

/** Runs every check; never throws for a configuration or network problem. */
export async function runDoctor(
  env: Readonly<Record<string, string | undefined>>,
  options: DoctorOptions = {},
): Promise<DoctorReport> {
  const checks = new Checks();
  // The same checks as `serve` (settings, and the files they name such as AUTHZ_CONFIG).
  const { config, ...settings } = preflight(env, options.readFile);
  for (const problem of settings.problems) checks.problem('configuration', problem);
  for (const warning of settings.warnings) checks.warning('configuration', warning);
  if (config) {
    checks.ok(
      'configuration',
      `loaded: issuer ${config.issuerUrl}, client ${config.clientId}, store ${config.redis ? `redis (${config.redis.mode})` : 'memory'}`,
    );
    const timeoutMs = options.timeoutMs ?? 5_000;
    checks.list.push(...checkSettings(config));
    checks.list.push(
      ...(await checkAuthenticationConfiguration(config, {
        timeoutMs,
        ...(options.authenticationConfig ? { path: options.authenticationConfig } : {}),
        ...(options.token ? { token: options.token } : {}),
        ...(options.readFile ? { readFile: options.readFile } : {}),
      })),
    );
    const discovery = await checkDiscovery(config, checks, timeoutMs);
    if (discovery) {
      await checkJwks(discovery, checks, timeoutMs);
      await checkClientCredentials(config, discovery, checks, timeoutMs);
      await checkAuthorization(config, discovery, checks, timeoutMs, options.hosts ?? []);
    }
    await checkRedis(config, checks, timeoutMs);
  }
  const problems = checks.list.filter((c) => c.status === 'problem').length;
  const warnings = checks.list.filter((c) => c.status === 'warning').length;
  return { checks: checks.list, problems, warnings };
}

// --- the identity provider ------------------------------------------------------------------------

function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

async function checkDiscovery(
  config: Config,
  checks: Checks,
  timeoutMs: number,
): Promise<Discovery | undefined> {
  const url = discoveryUrl(config.issuerUrl);
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
  } catch (error) {
    checks.problem('discovery', `${url} cannot be reached (${reason(error)}); is OIDC_ISSUER_URL right?`);
    return undefined;
  }
  if (response.status !== 200) {
    checks.problem(
      'discovery',
      `${url} answered HTTP ${response.status}; OIDC_ISSUER_URL must be the issuer itself (Dex: its "issuer" setting, e.g. https://dex.example.com/dex)`,
    );
    return undefined;
  }
  let doc: Discovery;
  try {
    doc = (await response.json()) as Discovery;
  } catch {
    checks.problem('discovery', `${url} did not answer with JSON`);
    return undefined;
  }
  checkClockSkew(response, checks);
  if (doc.issuer !== config.issuerUrl) {
    const hint =
      typeof doc.issuer === 'string' && doc.issuer.replace(/\/$/, '') === config.issuerUrl.replace(/\/$/, '')
        ? ' (they differ only in the trailing slash, which the token check and the API server both compare)'
        : '';
    checks.problem(
      'issuer',
      `the provider calls itself ${JSON.stringify(doc.issuer)} but OIDC_ISSUER_URL is ${JSON.stringify(config.issuerUrl)}: they must be equal byte for byte${hint}`,
    );
  } else {
    checks.ok('issuer', `discovery answered and its issuer equals OIDC_ISSUER_URL byte for byte`);
  }
  for (const field of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
    if (typeof doc[field] !== 'string') {
      checks.problem('discovery', `the discovery document has no ${field}`);
      return undefined;
    }
  }
  const supported = Array.isArray(doc.scopes_supported) ? (doc.scopes_supported as string[]) : undefined;
  if (supported) {
    const unknown = config.scopes.filter(
      (s) => !supported.includes(s) && !s.startsWith('audience:server:client_id:'),
    );
    if (unknown.length > 0) {
      checks.warning(
        'scopes',
        `the provider does not list ${unknown.join(', ')} in scopes_supported (OIDC_SCOPES)`,
      );
    }
  }
  if (!config.scopes.includes('offline_access')) {
    checks.warning(
      'scopes',
      'OIDC_SCOPES lacks offline_access: Dex issues no refresh token, so users log in again whenever the ID token expires',
    );
  }
  const pkce = doc.code_challenge_methods_supported;
  if (Array.isArray(pkce) && !pkce.includes('S256')) {
    checks.problem('discovery', 'the provider does not support PKCE S256 (code_challenge_methods_supported)');
  }
  return doc;
}

function checkClockSkew(response: Response, checks: Checks): void {
  const date = response.headers.get('date');
  if (!date) return;
  const skew = Math.abs(Date.parse(date) - Date.now());
  if (Number.isFinite(skew) && skew > 30_000) {
    checks.warning(
      'clock',
      `this machine's clock differs from the provider's by ${Math.round(skew / 1000)} s: token expiry checks will misjudge`,
    );
  }
}

async function checkJwks(discovery: Discovery, checks: Checks, timeoutMs: number): Promise<void> {
  const url = discovery.jwks_uri as string;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    if (response.status !== 200) {
      checks.problem('jwks', `${url} answered HTTP ${response.status}`);
      return;
    }
    const body = (await response.json()) as { keys?: unknown };
    const keys = Array.isArray(body.keys) ? (body.keys as { kty?: unknown; use?: unknown }[]) : [];
    const signing = keys.filter((k) => typeof k.kty === 'string' && k.use !== 'enc');
    if (signing.length === 0) {
      checks.problem('jwks', `${url} publishes no signing keys`);
      return;
    }
    checks.ok('jwks', `${url} publishes ${signing.length} signing key${signing.length === 1 ? '' : 's'}`);
  } catch (error) {
    checks.problem('jwks', `${url} cannot be read (${reason(error)})`);
  }
}

/**
 * The token endpoint authenticates the client before it looks at the grant: a made-up code is
 * refused with invalid_grant when the credentials are right, with invalid_client when not.
 */
async function checkClientCredentials(
  config: Config,
  discovery: Discovery,
  checks: Checks,
  timeoutMs: number,
): Promise<void> {
  const url = discovery.token_endpoint as string;
  const basic = Buffer.from(
    `${encodeURIComponent(config.clientId)}:${encodeURIComponent(config.clientSecret)}`,
  ).toString('base64');
  const body = new URLSearchParams({
    grant_type: 'authorization_code',
    code: `dex-forward-auth-doctor-${randomBytes(8).toString('hex')}`,
    redirect_uri: config.redirectUrl ?? 'https://doctor.invalid/oauth2/callback',
  });
  let status: number;
  let error = '';
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Basic ${basic}`,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'manual',
    });
    status = response.status;
    try {
      error = String(((await response.json()) as { error?: unknown }).error ?? '');
    } catch {
      // not JSON
    }
  } catch (e) {
    checks.problem('client credentials', `the token endpoint ${url} cannot be reached (${reason(e)})`);
    return;
  }
  if (status === 401 || error === 'invalid_client' || error === 'unauthorized_client') {
    checks.problem(
      'client credentials',
      `the token endpoint rejected OIDC_CLIENT_ID "${config.clientId}" with its OIDC_CLIENT_SECRET (HTTP ${status}${error ? ` ${error}` : ''}): compare them with the staticClients entry in Dex`,
    );
  } else if (status === 400 && (error === 'invalid_grant' || error === 'invalid_request')) {
    checks.ok('client credentials', 'the token endpoint accepted the client id and secret');
  } else {
    checks.warning(
      'client credentials',
      `could not be tested: the token endpoint answered HTTP ${status}${error ? ` ${error}` : ''} to a made-up code`,
    );
  }
}

/** Asks the authorization endpoint whether it accepts the client and callback URL (no login happens). */
async function checkAuthorization(
  config: Config,
  discovery: Discovery,
  checks: Checks,
  timeoutMs: number,
  hosts: readonly string[],
): Promise<void> {
  const callbacks = config.redirectUrl
    ? [config.redirectUrl]
    : hosts.map((h) => `${config.cookieSecure ? 'https' : 'http'}://${h}/oauth2/callback`);
  if (callbacks.length === 0) {
    checks.skipped(
      'redirect URL',
      'REDIRECT_URL is unset, so each protected host uses <proto>://<host>/oauth2/callback: register every one in Dex (check them with `doctor --host <host>`)',
    );
    return;
  }
  for (const callback of callbacks) {
    const url = new URL(discovery.authorization_endpoint as string);
    url.searchParams.set('client_id', config.clientId);
    url.searchParams.set('redirect_uri', callback);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('scope', config.scopes.join(' '));
    url.searchParams.set('state', 'dex-forward-auth-doctor');
    url.searchParams.set('nonce', 'dex-forward-auth-doctor');
    url.searchParams.set('code_challenge', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
    url.searchParams.set('code_challenge_method', 'S256');
    let response: Response;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
      await response.body?.cancel();
    } catch (error) {
      checks.problem('redirect URL', `the authorization endpoint cannot be reached (${reason(error)})`);
      continue;
    }
    const location = response.headers.get('location') ?? '';
    if (response.status >= 300 && response.status < 400 && location.startsWith(callback)) {
      const err = new URL(location).searchParams.get('error');
      if (err) {
        checks.problem('redirect URL', `the provider refused the login request for ${callback}: ${err}`);
        continue;
      }
    }
    if (response.status >= 400) {
      checks.problem(
        'redirect URL',
        `the provider refused a login for client "${config.clientId}" with callback ${callback} (HTTP ${response.status}): add it to the client's redirectURIs in Dex`,
      );
    } else {
      checks.ok('redirect URL', `the provider accepts client "${config.clientId}" with callback ${callback}`);
    }
  }
}

// --- settings that only make sense together ------------------------------------------------------

/** The checks that need no network: callback URL, cookie domain vs. hosts, secrets' strength. */
export function checkSettings(config: Config): Check[] {
  const checks = new Checks();
  checkRedirectUrl(config, checks);
  checkCookies(config, checks);
  checkSecrets(config, checks);
  return checks.list;
}

const within = (host: string, domain: string): boolean => {
  const d = domain.replace(/^\./, '').toLowerCase();
  const h = host.replace(/^\./, '').replace(/:\d+$/, '').toLowerCase();
  return h === d || h.endsWith(`.${d}`);
};

function checkRedirectUrl(config: Config, checks: Checks): void {
  if (!config.redirectUrl) return;
  const url = new URL(config.redirectUrl);
  const localhost = url.hostname === 'localhost' || url.hostname.endsWith('.localhost');
  if (url.pathname !== '/oauth2/callback') {
    checks.problem(
      'redirect URL',
      `REDIRECT_URL path is ${url.pathname}; the service serves /oauth2/callback`,
    );
  }
  if (url.protocol === 'http:' && config.cookieSecure && !localhost) {
    checks.problem(
      'redirect URL',
      'REDIRECT_URL is http:// but COOKIE_SECURE=true: browsers drop Secure cookies on http, so every login would loop; use https',
    );
  } else if (url.protocol === 'http:' && !localhost) {
    checks.warning('redirect URL', 'REDIRECT_URL is http://: the session cookie travels in clear text');
  }
}

function checkCookies(config: Config, checks: Checks): void {
  const domain = config.cookieDomain;
  const redirectHost = config.redirectUrl ? new URL(config.redirectUrl).host : undefined;
  let fine = true;
  if (domain) {
    // A public suffix or single label never gets here: the configuration refuses it.
    for (const allowed of config.allowedRedirectDomains) {
      if (!within(allowed.replace(/^\*\./, ''), domain)) {
        fine = false;
        checks.problem(
          'cookie domain',
          `ALLOWED_REDIRECT_DOMAINS entry ${allowed} is outside COOKIE_DOMAIN ${domain}: a user sent there never presents the session cookie and logs in again and again`,
        );
      }
    }
    if (redirectHost && !within(redirectHost, domain)) {
      fine = false;
      checks.problem(
        'cookie domain',
        `REDIRECT_URL host ${redirectHost} is outside COOKIE_DOMAIN ${domain}: the cookie set by the callback cannot be set for ${domain}`,
      );
    }
  } else if (redirectHost) {
    const others = config.allowedRedirectDomains.filter(
      (d) => d.replace(/:\d+$/, '') !== redirectHost.replace(/:\d+$/, ''),
    );
    if (others.length > 0) {
      fine = false;
      checks.problem(
        'cookie domain',
        `REDIRECT_URL sends every login to ${redirectHost}, but COOKIE_DOMAIN is unset, so the session cookie stays on that host and ${others.join(', ')} never see it (a login loop): set COOKIE_DOMAIN to a domain covering them all`,
      );
    }
  }
  if (!config.cookieSecure) {
    checks.warning('cookie domain', 'COOKIE_SECURE=false: cookies are sent over plain http too (demos only)');
  }
  if (fine) {
    checks.ok(
      'cookie domain',
      domain
        ? `COOKIE_DOMAIN ${domain} covers ${[...config.allowedRedirectDomains, ...(redirectHost ? [redirectHost] : [])].join(', ') || 'the protected hosts'}`
        : 'host-only session cookie (each protected host logs in on its own)',
    );
  }
}

/** Re-exported: the strength estimate lives with the settings (src/config/secretStrength.ts). */
export { estimatedBits } from './config.ts';

function checkSecrets(config: Config, checks: Checks): void {
  let fine = true;
  const seen = new Map<string, string>();
  for (const { id, secret } of config.cookieSecrets) {
    const name = config.cookieSecrets.length > 1 ? `COOKIE_SECRETS secret "${id}"` : 'COOKIE_SECRET';
    // The start-up check (a Config built by hand may still carry a weak secret).
    const problem = cookieSecretProblem(name, secret);
    if (problem) {
      fine = false;
      checks.problem('secrets', problem);
    }
    const other = seen.get(secret);
    if (other !== undefined)
      checks.warning('secrets', `COOKIE_SECRETS "${id}" repeats the secret of "${other}"`);
    seen.set(secret, id);
  }
  if (config.clientSecret.length < 16) {
    checks.warning('secrets', 'OIDC_CLIENT_SECRET is shorter than 16 characters');
  }
  if (fine) {
    checks.ok(
      'secrets',
      `${config.cookieSecrets.length} cookie secret${config.cookieSecrets.length === 1 ? '' : 's'} of sufficient length and variety`,
    );
  }
}

// --- Redis -----------------------------------------------------------------------------------------

async function checkRedis(config: Config, checks: Checks, timeoutMs: number): Promise<void> {
  if (!config.redis) {
    checks.warning('redis', 'REDIS_URL is unset: sessions live in memory, so run exactly one replica');
    return;
  }
  const where =
    config.redis.mode === 'single'
      ? redactUrl(config.redis.url)
      : config.redis.mode === 'sentinel'
        ? `sentinel ${config.redis.name} via ${config.redis.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`
        : `cluster ${config.redis.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
  const client = createRedisClient(config.redis);
  let lastError = '';
  client.on('error', (error: Error) => {
    lastError = error.message;
  });
  const store = new RedisStore(client, { prefix: 'dfa:doctor:' });
  try {
    if (!(await store.ready(timeoutMs))) {
      checks.problem('redis', `${where} is not reachable${lastError ? ` (${lastError})` : ''}`);
      return;
    }
    const key = randomBytes(8).toString('hex');
    const value = randomBytes(8).toString('hex');
    try {
      await store.set(key, value, 10_000);
      const back = await store.get(key);
      await store.del(key);
      if (back !== value) throw new Error('a value written could not be read back');
      checks.ok('redis', `${where} is reachable and writable`);
    } catch (error) {
      checks.problem(
        'redis',
        `${where} answers but cannot be written: ${(error as Error).message.replace(/^redis: /, '')}`,
      );
    }
  } finally {
    await store.close();
  }
}

function redactUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'REDIS_URL';
  }
}

// --- output ----------------------------------------------------------------------------------------

const MARK: Record<CheckStatus, string> = { ok: 'ok  ', problem: 'FAIL', warning: 'warn', skipped: 'skip' };

export function formatReport(report: DoctorReport): string {
  const lines = report.checks.map((c) => `${MARK[c.status]}  ${c.topic}: ${c.message}`);
  const summary =
    report.problems === 0
      ? `no problems found${report.warnings ? ` (${report.warnings} warning${report.warnings === 1 ? '' : 's'})` : ''}`
      : `${report.problems} problem${report.problems === 1 ? '' : 's'} found${report.warnings ? `, ${report.warnings} warning${report.warnings === 1 ? '' : 's'}` : ''}`;
  return `${lines.join('\n')}\n\n${summary}\n`;
}

/** The CLI command: `doctor [--json] [--host <host>]…`; returns the exit status. */
export async function doctorCommand(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  out: { write(text: string): unknown },
): Promise<number> {
  const hosts: string[] = [];
  let json = false;
  const identity: { token?: string; authenticationConfig?: string } = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--json') json = true;
    else if (arg === '--host' && args[i + 1]) hosts.push(args[++i] as string);
    else if (arg.startsWith('--host=')) hosts.push(arg.slice('--host='.length));
    else if (arg === '--token' && args[i + 1]) identity.token = args[++i] as string;
    else if (arg.startsWith('--token=')) identity.token = arg.slice('--token='.length);
    else if (arg === '--authentication-config' && args[i + 1])
      identity.authenticationConfig = args[++i] as string;
    else if (arg.startsWith('--authentication-config=')) {
      identity.authenticationConfig = arg.slice('--authentication-config='.length);
    } else {
      out.write(
        `usage: dex-forward-auth doctor [--json] [--host <protected host>]… [--authentication-config <file>] [--token <jwt>]\n`,
      );
      return 2;
    }
  }
  const report = await runDoctor(env, { hosts, ...identity });
  out.write(json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.problems === 0 ? 0 : 1;
}
