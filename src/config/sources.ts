import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { didYouMean, environmentLookalikes, suggestionsFor } from './lookalikes.ts';
import { SETTING_NAMES, type SettingName } from './settings.ts';

/**
 * Where raw settings come from: CONFIG_FILE (YAML, keys are the setting names), then the
 * environment, then X_FILE files — each later one wins. Problems reading them are collected,
 * never thrown one by one.
 */

export type RawSettings = Partial<Record<SettingName, string>>;

export interface Collected {
  readonly raw: RawSettings;
  readonly problems: string[];
  /** Not fatal: environment names that only look like ours. */
  readonly warnings: string[];
}

export type Env = Readonly<Record<string, string | undefined>>;
export type ReadFile = (path: string) => string;

export const readUtf8: ReadFile = (path) => readFileSync(path, 'utf8');

const KNOWN = new Set<string>(SETTING_NAMES);
/** The names the environment may carry: every setting, its X_FILE form, and CONFIG_FILE. */
const KNOWN_IN_ENV = new Set<string>([
  'CONFIG_FILE',
  ...SETTING_NAMES,
  ...SETTING_NAMES.map((n) => `${n}_FILE`),
]);

export function collectSettings(env: Env, readFile: ReadFile = readUtf8): Collected {
  const raw: RawSettings = {};
  const problems: string[] = [];
  const configFile = env['CONFIG_FILE'];
  if (configFile) readConfigFile(configFile, readFile, raw, problems);
  for (const name of SETTING_NAMES) {
    const value = env[name];
    if (value !== undefined && value !== '') raw[name] = value;
    const file = env[`${name}_FILE`];
    if (!file) continue;
    try {
      raw[name] = readFile(file).replace(/\r?\n$/, '');
    } catch (error) {
      problems.push(
        `${name}_FILE ${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  const lookalikes = environmentLookalikes(Object.keys(env), KNOWN_IN_ENV);
  return { raw, problems: [...problems, ...lookalikes.problems], warnings: lookalikes.warnings };
}

function readConfigFile(path: string, readFile: ReadFile, raw: RawSettings, problems: string[]): void {
  let doc: unknown;
  try {
    doc = parseYaml(readFile(path));
  } catch (error) {
    problems.push(`CONFIG_FILE ${path}: cannot be read (${(error as Error).message})`);
    return;
  }
  if (doc === null || doc === undefined) return;
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    problems.push(`CONFIG_FILE ${path}: expected a mapping of setting names to values`);
    return;
  }
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const name = key.toUpperCase();
    if (!KNOWN.has(name)) {
      problems.push(
        `CONFIG_FILE ${path}: unknown setting ${key}${didYouMean(suggestionsFor(name).filter((s) => s !== name))}`,
      );
      continue;
    }
    if (value === null || value === undefined) continue;
    if (name === 'KUBE_CLUSTERS' && typeof value === 'object') raw.KUBE_CLUSTERS = JSON.stringify(value);
    else if (Array.isArray(value)) raw[name as SettingName] = value.map(String).join(',');
    else if (typeof value === 'object')
      problems.push(`CONFIG_FILE ${path}: ${key} must be a scalar or a list`);
    else raw[name as SettingName] = String(value);
  }
}
