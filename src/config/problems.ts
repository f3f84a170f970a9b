import type { z } from 'zod';
import type { PartialValues } from './rules.ts';
import { SECRET_SETTINGS, SETTINGS, type SettingName } from './settings.ts';
import type { RawSettings } from './sources.ts';
import type { SettingDef } from './types.ts';

/** "Every problem at once": one error listing them all, each naming its setting, no secret in any. */

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `SESSION_TTL` + `must be …` → `SESSION_TTL must be …`; `TRUSTED_PROXIES` + `: …` → `TRUSTED_PROXIES: …`. */
const problemText = (name: string, issue: z.core.$ZodIssue): string =>
  issue.message.startsWith(':') ? `${name}${issue.message}` : `${name} ${issue.message}`;

/** Runs every row's parser on its raw text; a refused value is left out and its issues reported. */
export function parseEach(raw: RawSettings, problems: string[]): PartialValues {
  const values: Record<string, unknown> = {};
  for (const row of SETTINGS as readonly SettingDef[]) {
    const result = row.schema.safeParse(raw[row.name as SettingName]);
    if (result.success) values[row.name] = result.data;
    else problems.push(...result.error.issues.map((issue) => problemText(row.name, issue)));
  }
  return values as PartialValues;
}

/** The Config fields that are one setting each (the rows with a `field`). */
export function directFields(values: PartialValues): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const row of SETTINGS as readonly SettingDef[]) {
    if (row.field) fields[row.field] = values[row.name as SettingName];
  }
  return fields;
}

/** Defence in depth: no problem text may contain a secret's value. */
export function redactSecrets(text: string, raw: RawSettings): string {
  let out = text;
  for (const name of SECRET_SETTINGS) {
    const value = raw[name as SettingName];
    if (!value) continue;
    for (const part of value.split(/[,:]/)) {
      if (part.length >= 8) out = out.split(part).join('[redacted]');
    }
  }
  return out;
}
