import { loadPolicy } from './authz/policyFile.ts';
import { type Config, inspectConfig } from './config.ts';
import { loadAuthenticationFile } from './identity/authenticationFile.ts';

/**
 * Everything checked before anything starts, by `serve` and `doctor` alike: every setting and the
 * files they name — CONFIG_FILE, each X_FILE, KUBE_CLUSTERS caFile, SERVICE_ACCOUNT_TOKEN_PATH,
 * AUTHZ_KUBECONFIG, the AUTHZ_CONFIG policy with the RBAC files it lists, and the
 * AUTHENTICATION_CONFIG file with every CEL expression compiled — so that one start-up
 * reports every problem together.
 */

export interface Preflight {
  /** Undefined when there are problems. */
  readonly config: Config | undefined;
  readonly problems: readonly string[];
  /** Not fatal: environment names that look like ours but are close to no setting. */
  readonly warnings: readonly string[];
}

export function preflight(
  env: Readonly<Record<string, string | undefined>>,
  readFile?: (path: string) => string,
): Preflight {
  const settings = inspectConfig(env, readFile);
  // The policy's path is known even when other settings are wrong: check it all the same.
  const policyPath = settings.raw.AUTHZ_CONFIG?.trim();
  const policyProblems = policyPath ? loadPolicy(policyPath, readFile).problems : [];
  const problems = [...settings.problems, ...policyProblems, ...authenticationProblems(settings, readFile)];
  return {
    config: problems.length === 0 ? settings.config : undefined,
    problems,
    warnings: settings.warnings,
  };
}

/** AUTHENTICATION_CONFIG (src/identity/), checked with the issuer and http setting as given. */
function authenticationProblems(
  settings: ReturnType<typeof inspectConfig>,
  readFile: ((path: string) => string) | undefined,
): readonly string[] {
  const path = settings.raw.AUTHENTICATION_CONFIG?.trim();
  if (!path) return [];
  const insecure = settings.raw.OIDC_ALLOW_INSECURE_HTTP?.trim().toLowerCase() ?? '';
  return loadAuthenticationFile({
    path,
    loginIssuer: settings.config?.issuerUrl ?? settings.raw.OIDC_ISSUER_URL?.trim() ?? '',
    allowInsecureHttp: settings.config?.allowInsecureHttp ?? ['true', '1', 'yes', 'on'].includes(insecure),
    ...(readFile ? { readFile } : {}),
  }).problems;
}
