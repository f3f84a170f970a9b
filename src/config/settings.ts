import { isIP } from 'node:net';
import type { z } from 'zod';
import { auditAllow, auditTarget } from './audit.ts';
import { clientKey } from './clientKey.ts';
import { kubeClusterList } from './kubeClusters.ts';
import { byteSize, count, duration, entries, flag, required, trimmed, verbatim } from './parsers.ts';
import type { SettingDef } from './types.ts';
import {
  bearerAlgorithmProblem,
  cidrProblem,
  cookieDomain,
  cookieSecretList,
  DEFAULT_TRUSTED_PROXIES,
  hostPortList,
  issuerUrl,
  logLevel,
  optionalPort,
  port,
  redirectDomainProblem,
  redirectUrl,
  redisUrl,
  tokenAuthMethod,
  upstreamAuth,
} from './values.ts';

export const DEFAULT_SCOPES = ['openid', 'profile', 'email', 'groups', 'offline_access'];
export const DEFAULT_UPSTREAM_HEADERS = [
  'Authorization',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
];
export const DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Every setting the service reads — the one table (DESIGN §3). Each row is the README's row
 * (`npm run docs:settings`), the parser of its raw text, and the Config `field` it fills; rows
 * without a field are combined by the rules in rules.ts. To add a setting, add a row here (and,
 * when it combines with others, a line in rules.ts).
 */
export const SETTINGS = [
  {
    name: 'OIDC_ISSUER_URL',
    default: 'required',
    description:
      'the identity provider\'s issuer, exactly as it and the API server write it (trailing slash included), e.g. `https://dex.mgmt.example.com/dex` (see "Providers")',
    field: 'issuerUrl',
    schema: issuerUrl(),
  },
  {
    name: 'OIDC_CLIENT_ID',
    default: 'required',
    description: 'the client registered at the identity provider (Dex: a `staticClients` entry)',
    field: 'clientId',
    schema: required(),
  },
  {
    name: 'OIDC_CLIENT_SECRET',
    default: 'required',
    description: "that client's secret (not needed with `OIDC_TOKEN_AUTH_METHOD=private_key_jwt`)",
    secret: true,
    field: 'clientSecret',
    schema: trimmed(''),
  },
  {
    name: 'OIDC_TOKEN_AUTH_METHOD',
    default: 'from discovery',
    description:
      'how the client authenticates at the token endpoint: `client_secret_basic`, `client_secret_post` or `private_key_jwt`; unset: what `token_endpoint_auth_methods_supported` offers (Basic, or the body for a secret with punctuation when the provider takes it there)',
    field: 'tokenAuthMethod',
    schema: tokenAuthMethod(),
  },
  {
    name: 'OIDC_CLIENT_PRIVATE_KEY',
    default: 'unset',
    description:
      'for `private_key_jwt`: the private key (PEM, or a JWK whose `kid`/`x5t` go into the assertion), usually as `OIDC_CLIENT_PRIVATE_KEY_FILE`',
    secret: true,
    field: 'clientPrivateKey',
    schema: clientKey(),
  },
  {
    name: 'OIDC_SCOPES',
    default: '`openid profile email groups offline_access`',
    description: "add `audience:server:client_id:kubernetes` so the token's `aud` suits the API server",
    field: 'scopes',
    schema: entries({ fallback: DEFAULT_SCOPES }).refine((scopes) => scopes.includes('openid'), {
      error: 'must include openid',
    }),
  },
  {
    name: 'OIDC_ALLOW_INSECURE_HTTP',
    default: '`false`',
    description: 'allow an `http://` issuer (demos and tests only; logged loudly)',
    field: 'allowInsecureHttp',
    schema: flag(false),
  },
  {
    name: 'OIDC_USERNAME_CLAIM',
    default: '`email`',
    description: 'claim holding the user name, as the API server reads it (`--oidc-username-claim`)',
    field: 'usernameClaim',
    schema: trimmed('email'),
  },
  {
    name: 'OIDC_USERNAME_PREFIX',
    default: 'none',
    description: 'prefix added to the user name, as the API server adds it (`--oidc-username-prefix`)',
    field: 'usernamePrefix',
    schema: verbatim(''),
  },
  {
    name: 'OIDC_GROUPS_CLAIM',
    default: '`groups`',
    description: 'claim holding the groups (string or array claim)',
    field: 'groupsClaim',
    schema: trimmed('groups'),
  },
  {
    name: 'OIDC_GROUPS_PREFIX',
    default: 'none',
    description: 'prefix added to every group, e.g. `oidc:` (`--oidc-groups-prefix`)',
    field: 'groupsPrefix',
    schema: verbatim(''),
  },
  {
    name: 'REDIRECT_URL',
    default: '`<proto>://<host>/oauth2/callback` of each request',
    description: 'one callback URL for a central auth host',
    field: 'redirectUrl',
    schema: redirectUrl(),
  },
  {
    name: 'COOKIE_SECRET',
    default: 'required',
    description:
      '≥ 32 random characters that seal the session cookie; a repeated or patterned secret (`aaaa…`, `abab…`, `passwordpassword…`) stops start-up',
    secret: true,
    schema: trimmed(undefined),
  },
  {
    name: 'COOKIE_SECRETS',
    default: 'unset',
    description:
      '`id1:secret1,id2:secret2` for rotation, instead of `COOKIE_SECRET`: the first seals, all unseal, old cookies are re-sealed on use',
    secret: true,
    schema: cookieSecretList(),
  },
  {
    name: 'COOKIE_NAME',
    default: '`_forward_auth`',
    description: 'becomes `__Host-_forward_auth` when the cookie is host-only and secure',
    field: 'cookieName',
    schema: trimmed('_forward_auth').refine((name) => /^[A-Za-z0-9_-]{1,64}$/.test(name), {
      error: (issue) => `may contain only letters, digits, - and _, got "${String(issue.input)}"`,
    }),
  },
  {
    name: 'COOKIE_DOMAIN',
    default: 'unset (host-only)',
    description:
      'e.g. `.example.com` for one login across subdomains; a public suffix (`com`, `.co.uk`, `.github.io`) or a single label stops start-up',
    field: 'cookieDomain',
    schema: cookieDomain(),
  },
  {
    name: 'COOKIE_SECURE',
    default: '`true`',
    description: 'mark cookies `Secure`',
    field: 'cookieSecure',
    schema: flag(true),
  },
  {
    name: 'SESSION_TTL',
    default: '`168h`',
    description: 'absolute session lifetime; after it the user logs in again',
    field: 'sessionTtlMs',
    schema: duration('168h'),
  },
  {
    name: 'SESSION_IDLE_TIMEOUT',
    default: '`12h`',
    description:
      'a session nobody used for this long ends (signed out everywhere, as by sign-out); `0` = never. Uses are noted in memory and written to Redis at most once per 1/8 of this (≤ 5 min)',
    field: 'sessionIdleTimeoutMs',
    schema: duration('12h', { zeroTurnsOff: true }).refine((ms) => ms === 0 || ms >= 1_000, {
      error: 'must be at least 1s (or 0 for none)',
    }),
  },
  {
    name: 'MAX_SESSIONS_PER_USER',
    default: '`100`',
    description:
      "sessions one user may have at once: a login beyond it ends the user's least recently seen sessions (as the admin API ends one), so the sessions page and every reader of the list stay bounded",
    field: 'maxSessionsPerUser',
    schema: count(100, 'must be a whole number of sessions', 5).refine((n) => n >= 1, {
      error: 'must be at least 1',
    }),
  },
  {
    name: 'REFRESH_SKEW',
    default: '`30s`',
    description: "refresh the ID token this long before it expires (capped at half the token's lifetime)",
    field: 'refreshSkewMs',
    schema: duration('30s'),
  },
  {
    name: 'CACHE_MAX_BYTES',
    default: 'a quarter of the heap limit',
    description:
      'bytes that all in-process caches together may hold (sessions, unsealed cookies, last uses, ended sessions, memos; see "Sessions and caches"): least recently used entries go first, an evicted session is read from Redis again; `64Mi`, `100M`, a number of bytes, or `auto`: a quarter of V8\'s heap limit (54 Mi with the shipped `--max-old-space-size=192`)',
    field: 'cacheMaxBytes',
    schema: byteSize(1024 * 1024),
  },
  {
    name: 'SHUTDOWN_DELAY',
    default: '`5s`',
    description:
      'on SIGTERM, keep serving this long while `/readyz` answers 503, so Kubernetes takes the pod out of the Service first',
    field: 'shutdownDelayMs',
    schema: duration('5s', { zeroTurnsOff: true }),
  },
  {
    name: 'SHUTDOWN_TIMEOUT',
    default: '`20s`',
    description: 'then stop accepting and wait at most this long for in-flight requests',
    field: 'shutdownTimeoutMs',
    schema: duration('20s'),
  },
  {
    name: 'MAX_CONNECTIONS',
    default: '`1024`',
    description:
      'open connections each listener accepts (beyond: closed at once; `0`: no bound), and a quarter of it from any one address but a proxy `TRUSTED_PROXIES` names exactly (one address, `/32` or `/128`: a range such as the pod network is bounded per address too, so no pod takes every slot); a request must send its headers within 10 s and be complete within 30 s',
    field: 'maxConnections',
    schema: count(1024, 'must be a whole number of connections', 6),
  },
  {
    name: 'REDIS_URL',
    default: 'unset → in-memory store (one replica only; warned at start)',
    description: '`redis://` or `rediss://`',
    schema: redisUrl(),
  },
  {
    name: 'REDIS_SENTINELS',
    default: 'unset',
    description: 'Sentinel instead of `REDIS_URL`: `host:port,host:port`',
    schema: hostPortList(),
  },
  {
    name: 'REDIS_SENTINEL_NAME',
    default: 'unset',
    description: 'the Sentinel master name',
    schema: verbatim(''),
  },
  {
    name: 'REDIS_CLUSTER_NODES',
    default: 'unset',
    description: 'Redis Cluster instead of `REDIS_URL`: `host:port,…`',
    schema: hostPortList(),
  },
  { name: 'REDIS_USERNAME', default: 'unset', description: 'Redis ACL user', schema: verbatim('') },
  {
    name: 'REDIS_PASSWORD',
    default: 'unset',
    description: 'Redis password',
    secret: true,
    schema: verbatim(''),
  },
  {
    name: 'ALLOWED_REDIRECT_DOMAINS',
    default: "the request's own host",
    description: 'where `rd` may point: exact hosts, or `.example.com` for the domain and its subdomains',
    field: 'allowedRedirectDomains',
    schema: entries({ fallback: [], map: (d) => d.toLowerCase(), check: redirectDomainProblem }),
  },
  {
    name: 'TRUSTED_PROXIES',
    default: 'loopback only (`127.0.0.0/8,::1/128`)',
    description:
      "CIDRs whose `X-Forwarded-*` are believed: set the proxy's range (e.g. the Traefik pods' CIDR) when it is not on the same host",
    field: 'trustedProxies',
    schema: entries({ fallback: DEFAULT_TRUSTED_PROXIES }).superRefine((cidrs, ctx) => {
      const problem = cidrProblem(cidrs);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  },
  {
    name: 'LOGIN_RATE_LIMIT_BURST',
    default: '`20`',
    description:
      'login starts (and, separately, callbacks) one client IP (IPv6: its /64) may make at once, shared by all replicas through Redis; `0` turns the limit off',
    schema: count(20, 'must be a whole number (0 turns it off)'),
  },
  {
    name: 'LOGIN_RATE_LIMIT_INTERVAL',
    default: '`6s`',
    description: 'after the burst, one more attempt every this long; beyond it `429` with `Retry-After`',
    schema: duration('6s'),
  },
  {
    name: 'LOGIN_LOOP_LIMIT',
    default: '`5`',
    description:
      'after this many completed logins for one page, each within `LOGIN_LOOP_WINDOW` of the previous, the next one shows a page explaining the redirect loop; `0` turns it off',
    schema: count(5, 'must be a whole number (0 turns it off)'),
  },
  {
    name: 'LOGIN_LOOP_WINDOW',
    default: '`2m`',
    description: 'how close together completed logins must be to count as a loop',
    schema: duration('2m'),
  },
  {
    name: 'AUTHZ_CONFIG',
    default: 'unset → any logged-in user with a verified email',
    description: 'YAML authorization rules (checked at start-up with every other setting)',
    field: 'authzConfig',
    schema: trimmed(undefined),
  },
  {
    name: 'AUTHZ_KUBECONFIG',
    default: "unset → the pod's service account",
    description:
      'kubeconfig file used to watch ClusterRoles/Bindings when `AUTHZ_CONFIG` has `rbac.kubernetes: true` (for running outside the cluster)',
    field: 'authzKubeconfig',
    schema: trimmed(undefined),
  },
  {
    name: 'BEARER_AUDIENCES',
    default: 'unset → bearer pass-through off',
    description:
      "bearer pass-through: a token's `aud` must contain one of these (e.g. `kubernetes` for tokens minted for the API server); never `OIDC_CLIENT_ID`, and tokens minted for it are refused",
    schema: entries({ fallback: [], atLeastOne: 'must name at least one audience' }),
  },
  {
    name: 'BEARER_ALGORITHMS',
    default: '`RS256`',
    description:
      'bearer pass-through: allowed signing algorithms (RS, ES, PS 256/384/512; never `none` or HS*)',
    field: 'bearerAlgorithms',
    schema: entries({
      fallback: ['RS256'],
      check: bearerAlgorithmProblem,
      atLeastOne: 'must name at least one algorithm',
    }),
  },
  {
    name: 'AUTHENTICATION_CONFIG',
    default: 'unset',
    description:
      "the API server's `AuthenticationConfiguration` file: names, groups and bearer checks as it derives them (replaces `OIDC_USERNAME_*`, `OIDC_GROUPS_*`, `BEARER_*`)",
    field: 'authenticationConfig',
    schema: trimmed(undefined),
  },
  {
    name: 'UPSTREAM_HEADERS',
    default: '`Authorization,X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Groups`',
    description: 'headers set on a 2xx',
    field: 'upstreamHeaders',
    schema: entries({
      fallback: DEFAULT_UPSTREAM_HEADERS,
      check: (h) => (/^[A-Za-z0-9-]+$/.test(h) ? undefined : `entry "${h}" is not a header name`),
    }),
  },
  {
    name: 'UPSTREAM_AUTH',
    default: '`id-token`',
    description:
      '`id-token`: `Authorization` carries the user\'s ID token; `impersonate`: the pod\'s service-account token plus `Impersonate-User`/`Impersonate-Group` (see "Impersonation")',
    field: 'upstreamAuth',
    schema: upstreamAuth(),
  },
  {
    name: 'SERVICE_ACCOUNT_TOKEN_PATH',
    default: '`/var/run/secrets/kubernetes.io/serviceaccount/token`',
    description: 'the token sent upstream with `UPSTREAM_AUTH=impersonate` (re-read every minute)',
    field: 'serviceAccountTokenPath',
    schema: trimmed(DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH),
  },
  {
    name: 'UPSTREAM_GROUPS_MAX_BYTES',
    default: '`8000`',
    description:
      '`X-Auth-Request-Groups` keeps only whole groups within this many bytes (nginx refuses header lines over 8 KB); `0` = no bound',
    field: 'upstreamGroupsMaxBytes',
    schema: count(8000, 'must be a number of bytes (0: no bound)', 7),
  },
  {
    name: 'KUBE_CLUSTERS',
    default: 'unset',
    description:
      'YAML or JSON list of `{name, server, caData|caFile, clientId, audience, extraScopes}` for `/kubeconfig` (see "Kubeconfig page")',
    schema: kubeClusterList(),
  },
  { name: 'PORT', default: '`4180`', description: 'listening port', field: 'port', schema: port() },
  {
    name: 'AUTH_PORT',
    default: 'unset (`PORT` serves them)',
    description:
      'a separate port for the decision endpoints `/auth` and `/oauth2/auth`; `PORT` then no longer serves them (see "Security")',
    schema: optionalPort(),
  },
  {
    name: 'AUTH_TLS_CERT_FILE',
    default: 'unset',
    description: '`AUTH_PORT` speaks TLS with this PEM certificate (chain); re-read every minute',
    schema: trimmed(undefined),
  },
  {
    name: 'AUTH_TLS_KEY_FILE',
    default: 'unset',
    description: 'the PEM private key of `AUTH_TLS_CERT_FILE`',
    schema: trimmed(undefined),
  },
  {
    name: 'AUTH_TLS_CLIENT_CA_FILE',
    default: 'unset',
    description:
      'mutual TLS: `AUTH_PORT` accepts only clients (the proxy) with a certificate signed by this PEM CA',
    schema: trimmed(undefined),
  },
  {
    name: 'ADMIN_PORT',
    default: 'unset (no admin API)',
    description:
      'the admin API (list and end sessions; `dex-forward-auth sessions`) on a port of its own, to be reached from inside the cluster only: never route it to browsers (see "Your sessions and the admin API")',
    schema: optionalPort(),
  },
  {
    name: 'ADMIN_HOST',
    default: '`127.0.0.1`',
    description:
      'the address `ADMIN_PORT` listens on: loopback, which `kubectl exec` and `kubectl port-forward` reach (so the shipped admin-api component needs no other); `0.0.0.0` (or `::`) widens it to every pod that can reach this one',
    schema: trimmed('127.0.0.1').refine((host) => isIP(host) !== 0, { error: 'must be an IP address' }),
  },
  {
    name: 'ADMIN_TOKEN_FILE',
    default: 'unset',
    description:
      "a file holding the admin API's bearer token (a mounted Secret; at least 32 characters), read at every call; required with `ADMIN_PORT` unless `ADMIN_TLS_CLIENT_CA_FILE` is set",
    schema: trimmed(undefined),
  },
  {
    name: 'ADMIN_TLS_CERT_FILE',
    default: 'unset',
    description: '`ADMIN_PORT` speaks TLS with this PEM certificate (chain); re-read every minute',
    schema: trimmed(undefined),
  },
  {
    name: 'ADMIN_TLS_KEY_FILE',
    default: 'unset',
    description: 'the PEM private key of `ADMIN_TLS_CERT_FILE`',
    schema: trimmed(undefined),
  },
  {
    name: 'ADMIN_TLS_CLIENT_CA_FILE',
    default: 'unset',
    description:
      'mutual TLS: `ADMIN_PORT` accepts only clients with a certificate signed by this PEM CA (then `ADMIN_TOKEN_FILE` is optional)',
    schema: trimmed(undefined),
  },
  {
    name: 'LOG_LEVEL',
    default: '`info`',
    description: '`fatal`, `error`, `warn`, `info`, `debug` (one line per decision), `trace` or `silent`',
    field: 'logLevel',
    schema: logLevel(),
  },
  {
    name: 'AUDIT_LOG',
    default: '`stdout`',
    description:
      'the audit stream (one JSON line per login, refresh, sign-out, ended session and decision; see "Audit log"): `stdout` (with the logs, each line `"audit":true`), a file path (appended; reopened on SIGHUP) or `off`',
    field: 'auditLog',
    schema: auditTarget(),
  },
  {
    name: 'AUDIT_ALLOW',
    default: '`all`',
    description:
      'which allowed decisions the audit stream records: `all`, `none` or a sample rate such as `0.01` (denials are always recorded)',
    field: 'auditAllowRate',
    schema: auditAllow(),
  },
  {
    name: 'POD_NAME',
    default: 'the host name',
    description: "the replica's name in audit events (Kubernetes: the pod name, which is also its host name)",
    field: 'replicaName',
    schema: trimmed(undefined),
  },
] as const satisfies readonly SettingDef[];

type Row = (typeof SETTINGS)[number];

export type SettingName = Row['name'];

/** Each setting's parsed value, by name. */
export type SettingValues = { readonly [R in Row as R['name']]: z.output<R['schema']> };

/** The Config fields that are one setting each, as its parser returns them. */
export type DirectFields = {
  readonly [R in Extract<Row, { field: string }> as R['field']]: z.output<R['schema']>;
};

/** Every setting name the service reads, for X_FILE lookup and CONFIG_FILE validation. */
export const SETTING_NAMES: readonly SettingName[] = SETTINGS.map((s) => s.name);

/** Settings never printed. */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set(
  SETTINGS.filter((s: SettingDef) => s.secret === true).map((s) => s.name),
);
