import { z } from 'zod';
import type { RawText } from './types.ts';

/**
 * Generic parsers of one setting's raw text (flags, durations, counts, lists, plain text), each a
 * zod schema from `string | undefined` (unset) to the value. Issue messages follow the setting's
 * name: `SESSION_TTL` + ` must be a duration …`.
 */

/** A parser written as a function; `fail` records a problem (the value returned then is unused). */
export function parser<T>(
  read: (text: RawText, fail: (message: string) => void) => T,
): z.ZodType<T, RawText> {
  return z
    .string()
    .optional()
    .transform((text, ctx) =>
      read(text, (message) => ctx.addIssue({ code: 'custom', message, input: text })),
    );
}

/** Go-style durations ("168h", "1h30m", "30s", "500ms") or a bare number of seconds. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(trimmed); m !== null; m = re.exec(trimmed)) {
    total += Number(m[1]) * (units[m[2] as string] as number);
    matched = re.lastIndex;
  }
  return matched === trimmed.length && trimmed.length > 0 ? total : undefined;
}

/** Comma- or space-separated entries, empty ones dropped. */
export function list(text: RawText): string[] {
  if (text === undefined) return [];
  return text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** A required value, trimmed. */
export const required = (): z.ZodType<string, RawText> =>
  z.string({ error: 'is required' }).trim().min(1, { error: 'is required' });

/** Trimmed text; unset or blank gives `fallback`. */
export const trimmed = <F extends string | undefined>(fallback: F): z.ZodType<string | F, RawText> =>
  parser((text) => text?.trim() || fallback);

/** Text kept exactly as written (prefixes may end in a space); unset gives `fallback`. */
export const verbatim = (fallback: string): z.ZodType<string, RawText> => parser((text) => text ?? fallback);

export const flag = (fallback: boolean): z.ZodType<boolean, RawText> =>
  parser((text, fail) => {
    if (text === undefined) return fallback;
    const t = text.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(t)) return true;
    if (['false', '0', 'no', 'off'].includes(t)) return false;
    fail(`must be true or false, got "${text}"`);
    return fallback;
  });

/** A positive duration in ms (`0` too when `zeroTurnsOff`). */
export const duration = (
  fallback: string,
  options: { zeroTurnsOff?: boolean } = {},
): z.ZodType<number, RawText> =>
  parser((text, fail) => {
    if (options.zeroTurnsOff && text === '0') return 0;
    const value = text ?? fallback;
    const ms = parseDuration(value);
    if (ms === undefined || ms <= 0) fail(`must be a duration such as 30s, 10m or 168h, got "${value}"`);
    return ms ?? 0;
  });

/** A whole number of at most `digits` digits; `0` conventionally turns the feature off. */
export const count = (fallback: number, message: string, digits = 6): z.ZodType<number, RawText> =>
  parser((text, fail) => {
    const t = text?.trim();
    if (t === undefined) return fallback;
    if (!new RegExp(`^\\d{1,${digits}}$`).test(t)) fail(`${message}, got "${t}"`);
    return Number(t);
  });

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  ki: 1024,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * A size in bytes as Kubernetes writes quantities (`64Mi`, `100M`, `1Gi`; also `MiB`, `MB`) or a
 * plain number of bytes, at least `min`; unset or `auto` gives undefined (the caller's default).
 */
export const byteSize = (min: number): z.ZodType<number | undefined, RawText> =>
  parser((text, fail) => {
    const t = text?.trim();
    if (t === undefined || t === '' || t.toLowerCase() === 'auto') return undefined;
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(t);
    const unit = m ? BYTE_UNITS[(m[2] as string).toLowerCase()] : undefined;
    const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : Number.NaN;
    if (!Number.isFinite(bytes)) fail(`must be a size such as 64Mi, 100M or 1Gi (or auto), got "${t}"`);
    else if (bytes < min) fail(`must be at least ${min} bytes, got "${t}"`);
    return Number.isFinite(bytes) ? bytes : undefined;
  });

/**
 * A list (unset gives `fallback`); `check` returns a problem for a bad entry, `atLeastOne` the
 * problem for an empty list. `map` normalises each entry first.
 */
export const entries = (options: {
  readonly fallback: readonly string[];
  readonly check?: (entry: string) => string | undefined;
  readonly atLeastOne?: string;
  readonly map?: (entry: string) => string;
}): z.ZodType<readonly string[], RawText> =>
  parser((text, fail) => {
    if (text === undefined) return Object.freeze([...options.fallback]);
    const values = list(text).map(options.map ?? ((e) => e));
    for (const value of values) {
      const problem = options.check?.(value);
      if (problem) fail(problem);
    }
    if (values.length === 0 && options.atLeastOne) fail(options.atLeastOne);
    return Object.freeze(values);
  });

/** `host:port` entries (IPv6 hosts in brackets); undefined when one entry is not of that form. */
export function hostPorts(text: RawText): { host: string; port: number }[] | undefined {
  const out: { host: string; port: number }[] = [];
  for (const entry of list(text)) {
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(entry);
    if (!m) return undefined;
    out.push({ host: m[1] as string, port: Number(m[2]) });
  }
  return out;
}
