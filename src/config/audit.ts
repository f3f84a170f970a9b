import type { z } from 'zod';
import { parser } from './parsers.ts';
import type { RawText } from './types.ts';

/**
 * The audit stream's settings (issue 16 item 4): where its JSON lines go, and how many of the
 * allowed decisions it keeps (denials are always written).
 */

/** `stdout` (with the logs, each line `audit: true`), `off`, or a file the lines are appended to. */
export type AuditTarget =
  | { readonly kind: 'stdout' }
  | { readonly kind: 'off' }
  | { readonly kind: 'file'; readonly path: string };

export const auditTarget = (): z.ZodType<AuditTarget, RawText> =>
  parser((text, fail): AuditTarget => {
    const value = text?.trim() ?? '';
    const lower = value.toLowerCase();
    if (value === '' || lower === 'stdout') return { kind: 'stdout' };
    if (lower === 'off') return { kind: 'off' };
    if (!value.startsWith('/')) fail(`must be stdout, off or an absolute file path, got "${value}"`);
    return { kind: 'file', path: value };
  });

/** The share of allowed decisions written: `all` (1), `none` (0), or a rate in [0, 1]. */
export const auditAllow = (): z.ZodType<number, RawText> =>
  parser((text, fail) => {
    const value = text?.trim().toLowerCase() ?? '';
    if (value === '' || value === 'all') return 1;
    if (value === 'none') return 0;
    const rate = /^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(value) ? Number(value) : Number.NaN;
    if (!(rate >= 0 && rate <= 1)) fail(`must be all, none or a sample rate between 0 and 1, got "${text}"`);
    return rate;
  });
