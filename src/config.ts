/**
 * The configuration's public entry (DESIGN §3): one typed table of settings → one frozen Config,
 * or one ConfigError listing every problem. `loadConfig` is the only reader of the raw
 * environment: it merges CONFIG_FILE (YAML) < environment < X_FILE, validates everything and
 * reports every problem at once. Secrets never appear in error messages.
 *
 * The parts live in src/config/: the table (settings.ts) with its parsers (parsers.ts, values.ts,
 * kubeClusters.ts), where raw text comes from (sources.ts), the rules across settings
 * (rules.ts), "did you mean" (lookalikes.ts), secret strength (secretStrength.ts), problems
 * (problems.ts) and the whole pipeline (load.ts).
 */

export { MIN_ADMIN_TOKEN_LENGTH } from './config/adminListener.ts';
export { AUDIENCE_SCOPE_PREFIX, DEFAULT_KUBE_EXTRA_SCOPES } from './config/kubeClusters.ts';
export { type Config, type Inspection, inspectConfig, loadConfig, parseConfig } from './config/load.ts';
export { suggestionsFor } from './config/lookalikes.ts';
export { parseDuration } from './config/parsers.ts';
export { ConfigError } from './config/problems.ts';
export { broadTrustedProxies, broadTrustedProxiesWarning } from './config/proxyRanges.ts';
export { cookieSecretProblem, estimatedBits, MIN_SECRET_BITS } from './config/secretStrength.ts';
export {
  DEFAULT_SCOPES,
  DEFAULT_SERVICE_ACCOUNT_TOKEN_PATH,
  DEFAULT_UPSTREAM_HEADERS,
  SECRET_SETTINGS,
  SETTING_NAMES,
  SETTINGS,
  type SettingName,
} from './config/settings.ts';
export { collectSettings, type RawSettings } from './config/sources.ts';
export type {
  AdminListener,
  CookieSecret,
  DecisionListener,
  KubeCluster,
  RedisSettings,
  SettingSpec,
} from './config/types.ts';
export { BEARER_ALGORITHM_CHOICES, DEFAULT_TRUSTED_PROXIES } from './config/values.ts';
