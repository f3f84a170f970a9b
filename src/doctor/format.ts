import type { CheckStatus, DoctorReport } from './types.ts';

/** The report as text: one line per check, then a summary. */

const MARK: Record<CheckStatus, string> = { ok: 'ok  ', problem: 'FAIL', warning: 'warn', skipped: 'skip' };

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export function formatReport(report: DoctorReport): string {
  const lines = report.checks.map((c) => `${MARK[c.status]}  ${c.topic}: ${c.message}`);
  const warnings = report.warnings ? plural(report.warnings, 'warning') : '';
  const summary =
    report.problems === 0
      ? `no problems found${warnings ? ` (${warnings})` : ''}`
      : `${plural(report.problems, 'problem')} found${warnings ? `, ${warnings}` : ''}`;
  return `${lines.join('\n')}\n\n${summary}\n`;
}
