import type { Config } from '../config.ts';
import { preflight } from '../preflight.ts';
import { type Check, ok } from './types.ts';

/**
 * The first check, before any other can run: the configuration loaded exactly as `serve` loads
 * it (every setting and the files they name), every problem reported the same way.
 */
export function checkConfiguration(
  env: Readonly<Record<string, string | undefined>>,
  readFile?: (path: string) => string,
): { config: Config | undefined; checks: Check[] } {
  const { config, problems, warnings } = preflight(env, readFile);
  const checks: Check[] = [
    ...problems.map((message): Check => ({ topic: 'configuration', status: 'problem', message })),
    ...warnings.map((message): Check => ({ topic: 'configuration', status: 'warning', message })),
  ];
  if (config) {
    const store = config.redis ? `redis (${config.redis.mode})` : 'memory';
    const loaded = ok(`loaded: issuer ${config.issuerUrl}, client ${config.clientId}, store ${store}`);
    checks.push({ topic: 'configuration', status: loaded.status, message: loaded.message });
  }
  return { config, checks };
}
