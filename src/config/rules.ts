import { adminListener } from './adminListener.ts';
import { checkExplicitTrust, decisionListener } from './decisionListener.ts';
import { resolveKubeClusters } from './kubeClusters.ts';
import { cookieSecretProblem } from './secretStrength.ts';
import type { SettingValues } from './settings.ts';
import type { RawSettings } from './sources.ts';
import type { AdminListener, CookieSecret, DecisionListener, KubeCluster, RedisSettings } from './types.ts';

/**
 * The rules that involve more than one setting, after each was parsed on its own (settings.ts).
 * A value is undefined here when its own parser refused it (that problem is already reported), so
 * every rule still runs and all problems come out at once.
 */

/** The Config fields that combine several settings, or depend on another one. */
export interface DerivedFields {
  /** First seals, all unseal. */
  readonly cookieSecrets: readonly CookieSecret[];
  readonly redis: RedisSettings | undefined;
  /** Login starts and callbacks per client: `burst` at once, then one every `intervalMs` (0 = off). */
  readonly loginRateLimit: { readonly burst: number; readonly intervalMs: number };
  /** Redirect-loop breaker: `limit` completed logins for one page, each within `windowMs` (0 = off). */
  readonly loginLoop: { readonly limit: number; readonly windowMs: number };
  /** Bearer pass-through: `aud` must contain one of these (empty: pass-through off). */
  readonly bearerAudiences: readonly string[];
  readonly kubeClusters: readonly KubeCluster[];
  /** AUTH_PORT (and AUTH_TLS_*); undefined: PORT serves the decision endpoints too. */
  readonly decisionListener: DecisionListener | undefined;
  /** ADMIN_PORT (ADMIN_TOKEN_FILE, ADMIN_TLS_*); undefined: no admin API. */
  readonly adminListener: AdminListener | undefined;
}

export type PartialValues = { readonly [N in keyof SettingValues]?: SettingValues[N] };

export interface RuleInput {
  readonly raw: RawSettings;
  readonly values: PartialValues;
  readonly readFile: (path: string) => string;
}

export function applyRules(input: RuleInput, problems: string[]): DerivedFields {
  const { values: v } = input;
  checkIssuerScheme(v, problems);
  checkClientAuthentication(input, problems);
  checkServiceAccountToken(input, problems);
  checkImpersonationNames(v, problems);
  checkExplicitTrust(input.raw, v, problems);
  checkReadable('AUTHZ_KUBECONFIG', v.AUTHZ_KUBECONFIG, input.readFile, problems);
  checkAuthenticationConfig(input.raw, problems);
  return {
    cookieSecrets: cookieSecrets(input.raw, v, problems),
    redis: redis(input.raw, v, problems),
    loginRateLimit: Object.freeze({
      burst: v.LOGIN_RATE_LIMIT_BURST ?? 0,
      intervalMs: v.LOGIN_RATE_LIMIT_INTERVAL ?? 0,
    }),
    loginLoop: Object.freeze({ limit: v.LOGIN_LOOP_LIMIT ?? 0, windowMs: v.LOGIN_LOOP_WINDOW ?? 0 }),
    bearerAudiences: bearerAudiences(v, problems),
    kubeClusters: resolveKubeClusters(
      v.KUBE_CLUSTERS ?? [],
      { clientId: v.OIDC_CLIENT_ID ?? '', clientSecret: v.OIDC_CLIENT_SECRET, scopes: v.OIDC_SCOPES ?? [] },
      input.readFile,
      problems,
    ),
    decisionListener: decisionListener(v, input.readFile, problems),
    adminListener: adminListener(v, input.readFile, problems),
  };
}

/**
 * BEARER_AUDIENCES: unset = no bearer pass-through. The gateway's own client id is refused: its ID
 * tokens go to every upstream, so accepting them would let one dashboard act as its users on all.
 */
function bearerAudiences(v: PartialValues, problems: string[]): readonly string[] {
  const audiences = v.BEARER_AUDIENCES ?? [];
  if (v.OIDC_CLIENT_ID !== undefined && audiences.includes(v.OIDC_CLIENT_ID)) {
    problems.push(
      'BEARER_AUDIENCES must not contain OIDC_CLIENT_ID: the gateway hands its ID tokens to every upstream, so any dashboard could replay them as bearer tokens on every other; use the audience of the tokens your API clients get (e.g. kubernetes)',
    );
  }
  return audiences;
}

/** The settings AUTHENTICATION_CONFIG replaces (the API server refuses --oidc-* flags beside its file too). */
const REPLACED_BY_AUTHENTICATION_CONFIG = [
  'OIDC_USERNAME_CLAIM',
  'OIDC_USERNAME_PREFIX',
  'OIDC_GROUPS_CLAIM',
  'OIDC_GROUPS_PREFIX',
  'BEARER_AUDIENCES',
  'BEARER_ALGORITHMS',
] as const;

/** AUTHENTICATION_CONFIG (issue 17) defines user names, groups and bearer checks itself. */
function checkAuthenticationConfig(raw: RawSettings, problems: string[]): void {
  if (!raw.AUTHENTICATION_CONFIG?.trim()) return;
  for (const name of REPLACED_BY_AUTHENTICATION_CONFIG) {
    if (raw[name] !== undefined) {
      problems.push(
        `${name} cannot be combined with AUTHENTICATION_CONFIG, which defines user names, groups and bearer checks itself: remove ${name}`,
      );
    }
  }
}

function checkIssuerScheme(v: PartialValues, problems: string[]): void {
  if (v.OIDC_ISSUER_URL?.startsWith('http:') && v.OIDC_ALLOW_INSECURE_HTTP !== true) {
    problems.push(
      'OIDC_ISSUER_URL uses http://; set OIDC_ALLOW_INSECURE_HTTP=true for local demos and tests only',
    );
  }
}

/**
 * The client authenticates with a secret (OIDC_CLIENT_SECRET) or a key (OIDC_CLIENT_PRIVATE_KEY,
 * private_key_jwt): the one the chosen method needs must be there.
 */
function checkClientAuthentication(input: RuleInput, problems: string[]): void {
  const { raw, values: v } = input;
  const method = v.OIDC_TOKEN_AUTH_METHOD;
  const hasKey = raw.OIDC_CLIENT_PRIVATE_KEY !== undefined;
  if (method === 'private_key_jwt') {
    if (!hasKey) {
      problems.push(
        'OIDC_TOKEN_AUTH_METHOD=private_key_jwt needs OIDC_CLIENT_PRIVATE_KEY (or OIDC_CLIENT_PRIVATE_KEY_FILE)',
      );
    }
    return;
  }
  if (v.OIDC_CLIENT_SECRET === '' && !(method === undefined && hasKey)) {
    problems.push(
      'OIDC_CLIENT_SECRET is required (or OIDC_CLIENT_PRIVATE_KEY with OIDC_TOKEN_AUTH_METHOD=private_key_jwt)',
    );
  }
}

/** COOKIE_SECRETS (already checked entry by entry) wins; else COOKIE_SECRET; one is required. */
function cookieSecrets(raw: RawSettings, v: PartialValues, problems: string[]): readonly CookieSecret[] {
  if (raw.COOKIE_SECRETS !== undefined) return v.COOKIE_SECRETS ?? [];
  if (v.COOKIE_SECRET === undefined) {
    problems.push('COOKIE_SECRET (or COOKIE_SECRETS) is required: at least 32 random characters');
    return [];
  }
  const problem = cookieSecretProblem('COOKIE_SECRET', v.COOKIE_SECRET);
  if (problem) problems.push(problem);
  return Object.freeze([{ id: '1', secret: v.COOKIE_SECRET }]);
}

/** One of REDIS_URL, REDIS_SENTINELS (+ REDIS_SENTINEL_NAME), REDIS_CLUSTER_NODES, or none. */
function redis(raw: RawSettings, v: PartialValues, problems: string[]): RedisSettings | undefined {
  const set = [raw.REDIS_URL, raw.REDIS_SENTINELS, raw.REDIS_CLUSTER_NODES].filter((x) => x !== undefined);
  if (set.length > 1) {
    problems.push('set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES');
    return undefined;
  }
  const auth = {
    ...(v.REDIS_USERNAME ? { username: v.REDIS_USERNAME } : {}),
    ...(v.REDIS_PASSWORD ? { password: v.REDIS_PASSWORD } : {}),
  };
  if (v.REDIS_URL) return { mode: 'single', url: v.REDIS_URL, ...auth };
  if (v.REDIS_SENTINELS) {
    if (!v.REDIS_SENTINEL_NAME) {
      problems.push('REDIS_SENTINEL_NAME is required with REDIS_SENTINELS');
      return undefined;
    }
    return {
      mode: 'sentinel',
      sentinels: v.REDIS_SENTINELS,
      name: v.REDIS_SENTINEL_NAME,
      tls: false,
      ...auth,
    };
  }
  if (v.REDIS_CLUSTER_NODES) return { mode: 'cluster', nodes: v.REDIS_CLUSTER_NODES, tls: false, ...auth };
  return undefined;
}

/** Impersonation sends the pod's token upstream: it must be readable now, not at the first request. */
function checkServiceAccountToken(input: RuleInput, problems: string[]): void {
  const path = input.values.SERVICE_ACCOUNT_TOKEN_PATH;
  if (input.values.UPSTREAM_AUTH !== 'impersonate' || path === undefined) return;
  try {
    if (input.readFile(path).trim() === '') problems.push(`SERVICE_ACCOUNT_TOKEN_PATH ${path} is empty`);
  } catch (error) {
    problems.push(
      `SERVICE_ACCOUNT_TOKEN_PATH ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); UPSTREAM_AUTH=impersonate needs the pod's service-account token`,
    );
  }
}

function checkReadable(
  name: string,
  path: string | undefined,
  readFile: RuleInput['readFile'],
  problems: string[],
) {
  if (path === undefined) return;
  try {
    readFile(path);
  } catch (error) {
    problems.push(`${name} ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * Impersonation hands the API server names the identity provider chose (issue 11 item 9). As the
 * API server does for its own OIDC authenticator, a user name from a claim other than `email`
 * must carry a prefix, and so must groups then; no prefix may itself be a `system:` name.
 */
function checkImpersonationNames(v: PartialValues, problems: string[]): void {
  if (v.UPSTREAM_AUTH !== 'impersonate') return;
  const claim = v.OIDC_USERNAME_CLAIM ?? 'email';
  const userPrefix = v.OIDC_USERNAME_PREFIX ?? '';
  const groupsPrefix = v.OIDC_GROUPS_PREFIX ?? '';
  if (claim !== 'email') {
    if (userPrefix === '') {
      problems.push(
        `UPSTREAM_AUTH=impersonate with OIDC_USERNAME_CLAIM=${claim} needs OIDC_USERNAME_PREFIX (e.g. "oidc:"), as the API server prefixes such names; otherwise the identity provider picks Kubernetes user names`,
      );
    }
    if (groupsPrefix === '') {
      problems.push(
        `UPSTREAM_AUTH=impersonate with OIDC_USERNAME_CLAIM=${claim} needs OIDC_GROUPS_PREFIX (e.g. "oidc:"); otherwise the identity provider picks Kubernetes group names`,
      );
    }
  }
  for (const [name, prefix] of [
    ['OIDC_USERNAME_PREFIX', userPrefix],
    ['OIDC_GROUPS_PREFIX', groupsPrefix],
  ] as const) {
    if (prefix.startsWith('system:')) {
      problems.push(`${name} must not start with "system:" (Kubernetes reserves those names)`);
    }
  }
}
