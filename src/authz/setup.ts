import { readFileSync } from 'node:fs';
import { type Config, ConfigError } from '../config.ts';
import type { Logger } from '../log.ts';
import { PolicyAuthorizer, type PolicyEvents, PolicyLoadError } from './authorizer.ts';
import { guardImpersonation, ServiceAccountToken } from './impersonation.ts';
import { type Authorizer, defaultAuthorizer } from './policy.ts';
import { createUpstreamHeaderPlan, type UpstreamHeaderPlan } from './upstream.ts';

/**
 * Builds the authorizer from AUTHZ_CONFIG (hot-reloaded) — or the default one when it is unset —
 * and the upstream header plan. A broken policy at start-up is a configuration error: it stops
 * start-up with the list of problems, like a bad setting.
 */
export function createAuthorizer(
  config: Pick<Config, 'authzConfig' | 'authzKubeconfig'> & Partial<Pick<Config, 'upstreamAuth'>>,
  options: { log: Logger; events?: PolicyEvents },
): Authorizer {
  const policy = policyAuthorizer(config, options);
  return config.upstreamAuth === 'impersonate' ? guardImpersonation(policy, options.log) : policy;
}

function policyAuthorizer(
  config: Pick<Config, 'authzConfig' | 'authzKubeconfig'>,
  options: { log: Logger; events?: PolicyEvents },
): Authorizer {
  if (!config.authzConfig) return defaultAuthorizer;
  try {
    return new PolicyAuthorizer({
      path: config.authzConfig,
      log: options.log,
      ...(options.events ? { events: options.events } : {}),
      ...(config.authzKubeconfig ? { kubeconfigPath: config.authzKubeconfig } : {}),
    });
  } catch (error) {
    if (error instanceof PolicyLoadError) throw new ConfigError(error.problems);
    throw error;
  }
}

export interface Upstream {
  readonly plan: UpstreamHeaderPlan;
  close(): void;
}

export function createUpstream(config: Config, log: Logger): Upstream {
  if (config.upstreamAuth !== 'impersonate') {
    return { plan: createUpstreamHeaderPlan({ config, log }), close() {} };
  }
  let initial: string;
  try {
    initial = readFileSync(config.serviceAccountTokenPath, 'utf8');
  } catch (error) {
    throw new ConfigError([
      `SERVICE_ACCOUNT_TOKEN_PATH ${config.serviceAccountTokenPath} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
  const token = new ServiceAccountToken(config.serviceAccountTokenPath, initial, log);
  log.info(
    { tokenPath: config.serviceAccountTokenPath },
    'UPSTREAM_AUTH=impersonate: upstreams get the service-account token and Impersonate-* headers',
  );
  return {
    plan: createUpstreamHeaderPlan({ config, log, serviceAccountToken: () => token.current }),
    close: () => token.close(),
  };
}
