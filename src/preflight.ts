import { loadPolicy } from './authz/policyFile.ts';
import { type Config, inspectConfig } from './config.ts';

/**
 * Everything checked before anything starts, by `serve` and `doctor` alike: every setting and the
 * files they name — CONFIG_FILE, each X_FILE, KUBE_CLUSTERS caFile, SERVICE_ACCOUNT_TOKEN_PATH,
 * AUTHZ_KUBECONFIG, and the AUTHZ_CONFIG policy with the RBAC files it lists — so that one start-up
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
  const problems = [...settings.problems, ...policyProblems];
  return {
    config: problems.length === 0 ? settings.config : undefined,
    problems,
    warnings: settings.warnings,
  };
}
