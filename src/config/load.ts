import { ConfigError, directFields, parseEach, redactSecrets } from './problems.ts';
import { applyRules, type DerivedFields } from './rules.ts';
import type { DirectFields } from './settings.ts';
import { collectSettings, type Env, type RawSettings, type ReadFile, readUtf8 } from './sources.ts';

/**
 * Settings → Config: collect the raw text (sources.ts), parse each setting on its own
 * (settings.ts), apply the rules across settings (rules.ts), and either return one frozen Config
 * or throw one ConfigError listing every problem.
 */

type Flat<T> = { readonly [K in keyof T]: T[K] };

/** The validated configuration: one field per row of the table with a `field`, plus the rules' fields. */
export type Config = Flat<DirectFields & DerivedFields>;

export interface Inspection {
  /** Undefined when there are problems. */
  readonly config: Config | undefined;
  readonly problems: readonly string[];
  /** Not fatal (look-alike names that are close to no setting). */
  readonly warnings: readonly string[];
  readonly raw: RawSettings;
}

/** Validates raw settings into a Config plus every problem found; never throws. */
export function inspectRaw(
  raw: RawSettings,
  initialProblems: readonly string[],
  readFile: ReadFile,
): Inspection {
  const problems = [...initialProblems];
  const values = parseEach(raw, problems);
  const derived = applyRules({ raw, values, readFile }, problems);
  if (problems.length > 0) {
    return { config: undefined, problems: problems.map((p) => redactSecrets(p, raw)), warnings: [], raw };
  }
  const config = Object.freeze({ ...directFields(values), ...derived }) as Config;
  return { config, problems: [], warnings: [], raw };
}

/** Reads an environment (with CONFIG_FILE and X_FILE) and reports what it finds; never throws. */
export function inspectConfig(env: Env, readFile: ReadFile = readUtf8): Inspection {
  const { raw, problems, warnings } = collectSettings(env, readFile);
  return { ...inspectRaw(raw, problems, readFile), warnings };
}

/** Validates raw settings into a frozen Config, or throws one ConfigError listing every problem. */
export function parseConfig(
  raw: RawSettings,
  initialProblems: readonly string[] = [],
  readFile: ReadFile = readUtf8,
): Config {
  const result = inspectRaw(raw, initialProblems, readFile);
  if (!result.config) throw new ConfigError(result.problems);
  return result.config;
}

/** Reads and validates configuration from an environment. */
export function loadConfig(env: Env, readFile?: ReadFile): Config {
  const result = inspectConfig(env, readFile);
  if (!result.config) throw new ConfigError(result.problems);
  return result.config;
}
