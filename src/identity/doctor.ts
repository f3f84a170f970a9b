import { decodeJwt } from 'jose';
import type { Config } from '../config.ts';
import { loadAuthenticationFile } from './authenticationFile.ts';
import { mapClaims } from './claimMappings.ts';
import { identityFromClaims } from './claims.ts';
import { fetchWithCa, untrustedIssuer } from './jwtIssuers.ts';
import type { CompiledJwtAuthenticator } from './validation.ts';

/**
 * `doctor`'s view of AUTHENTICATION_CONFIG (or of a file given with `--authentication-config`,
 * to try one before switching): the file validated and every expression compiled as at start-up,
 * each issuer's discovery, and what a sample token maps to — by the file and, side by side, by
 * the flag-style settings (OIDC_USERNAME_*, OIDC_GROUPS_*). The sample is the token given with
 * `--token` (decoded, not verified; never printed) or the demo's admin user.
 */

export interface IdentityCheck {
  readonly topic: string;
  readonly status: 'ok' | 'problem' | 'warning' | 'skipped';
  readonly message: string;
}

export interface IdentityDoctorOptions {
  /** The file to check; default config.authenticationConfig. */
  readonly path?: string;
  /** A sample JWT (`--token`). */
  readonly token?: string;
  readonly readFile?: (path: string) => string;
  readonly timeoutMs: number;
}

/** The demo's admin user (scripts/demo.ts), as Dex would issue the ID token. */
function demoClaims(config: Config): Record<string, unknown> {
  return {
    iss: config.issuerUrl,
    aud: config.clientId,
    sub: 'CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs',
    email: 'admin@example.com',
    email_verified: true,
    name: 'admin',
    preferred_username: 'admin',
    groups: ['admins', 'engineering'],
  };
}

const list = (values: readonly string[]) => `[${values.join(', ')}]`;

async function checkDiscovery(a: CompiledJwtAuthenticator, timeoutMs: number): Promise<IdentityCheck> {
  const url = a.discoveryUrl ?? `${a.issuerUrl.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const topic = `jwt[${a.index}] issuer`;
  try {
    const response = await fetchWithCa(a.certificateAuthority)(url, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (response.status !== 200)
      return { topic, status: 'problem', message: `${url} answered HTTP ${response.status}` };
    const doc = (await response.json()) as { issuer?: unknown; jwks_uri?: unknown };
    if (doc.issuer !== a.issuerUrl) {
      return {
        topic,
        status: 'problem',
        message: `${url} calls itself ${JSON.stringify(doc.issuer)}, but issuer.url is ${JSON.stringify(a.issuerUrl)}: the API server refuses that too`,
      };
    }
    if (typeof doc.jwks_uri !== 'string')
      return { topic, status: 'problem', message: `${url} has no jwks_uri` };
    return {
      topic,
      status: 'ok',
      message: `${a.issuerUrl}: discovery answers (${url}), keys at ${doc.jwks_uri}`,
    };
  } catch (error) {
    return { topic, status: 'problem', message: `${url} cannot be reached (${(error as Error).message})` };
  }
}

function sampleClaims(
  config: Config,
  token: string | undefined,
): { claims: Record<string, unknown>; what: string } | string {
  if (token === undefined) return { claims: demoClaims(config), what: "the demo's admin user" };
  try {
    return {
      claims: decodeJwt(token) as Record<string, unknown>,
      what: 'the --token given (decoded, not verified)',
    };
  } catch {
    return '--token is not a JWT';
  }
}

function compareMappings(
  config: Config,
  authenticators: readonly CompiledJwtAuthenticator[],
  token: string | undefined,
): IdentityCheck {
  const topic = 'identity mapping';
  const sample = sampleClaims(config, token);
  if (typeof sample === 'string') return { topic, status: 'problem', message: sample };
  const issuer = token === undefined ? config.issuerUrl : untrustedIssuer(token);
  const a = authenticators.find((x) => x.issuerUrl === issuer);
  if (!a) {
    return {
      topic,
      status: 'problem',
      message: `${sample.what}: its issuer ${JSON.stringify(issuer)} is none of jwt[].issuer.url`,
    };
  }
  const flags = identityFromClaims(sample.claims, config);
  const flagText = `flags (OIDC_USERNAME_CLAIM=${config.usernameClaim}, OIDC_GROUPS_PREFIX=${JSON.stringify(config.groupsPrefix)}): user ${JSON.stringify(flags.user)}, groups ${list(flags.groups)}`;
  const result = mapClaims(a, sample.claims);
  if (!result.ok) {
    return {
      topic,
      status: token === undefined ? 'warning' : 'problem',
      message: `${sample.what}: jwt[${a.index}] refuses it (${result.refusal.field}: ${result.refusal.message}); ${flagText}`,
    };
  }
  const { user } = result;
  const extra = Object.entries(user.extra).map(([k, v]) => `${k}=${list(v)}`);
  const same = user.username === flags.user && list(user.groups) === list(flags.groups);
  return {
    topic,
    status: same ? 'ok' : 'warning',
    message: `${sample.what}: jwt[${a.index}] → user ${JSON.stringify(user.username)}, groups ${list(user.groups)}, uid ${JSON.stringify(user.uid)}${extra.length ? `, extra ${extra.join(' ')}` : ''}; ${flagText}${same ? '' : ' — they differ: rules and RBAC subjects must use the names the file produces'}`,
  };
}

export async function checkAuthenticationConfiguration(
  config: Config,
  options: IdentityDoctorOptions,
): Promise<IdentityCheck[]> {
  const path = options.path ?? config.authenticationConfig;
  if (path === undefined) {
    return options.token === undefined
      ? []
      : [
          {
            topic: 'identity mapping',
            status: 'skipped',
            message: '--token needs AUTHENTICATION_CONFIG or --authentication-config',
          },
        ];
  }
  const loaded = loadAuthenticationFile({
    path,
    loginIssuer: config.issuerUrl,
    allowInsecureHttp: config.allowInsecureHttp,
    ...(options.readFile ? { readFile: options.readFile } : {}),
  });
  if (!loaded.loaded)
    return loaded.problems.map((message) => ({ topic: 'authentication config', status: 'problem', message }));
  const { authenticators } = loaded.loaded;
  const expressions = authenticators.reduce(
    (n, a) =>
      n +
      a.claimRules.length +
      a.userRules.length +
      a.extra.length +
      ['username', 'groups', 'uid'].filter((k) => {
        const m = a[k as 'username' | 'groups' | 'uid'];
        return m !== undefined && 'program' in m;
      }).length,
    0,
  );
  const checks: IdentityCheck[] = [
    {
      topic: 'authentication config',
      status: 'ok',
      message: `${path}: ${authenticators.length} issuer${authenticators.length === 1 ? '' : 's'}, ${expressions} CEL expression${expressions === 1 ? '' : 's'} compiled, OIDC_ISSUER_URL among them`,
    },
  ];
  for (const a of authenticators) checks.push(await checkDiscovery(a, options.timeoutMs));
  checks.push(compareMappings(config, authenticators, options.token));
  return checks;
}
