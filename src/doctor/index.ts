import type { Config } from '../config.ts';
import { checkCallbackSetting } from './checks/callbackSetting.ts';
import { checkCookies } from './checks/cookies.ts';
import { checkSecrets } from './checks/secrets.ts';
import type { Check } from './types.ts';

/**
 * `doctor` (DESIGN §9): a list of checks, one file each in checks/, and a runner that prints and
 * exits (runner.ts). To add a check, add a file to checks/ that exports
 * `check: DoctorCheck = { order, topic, run(ctx) }` — nothing else needs to change.
 */

export { estimatedBits } from '../config.ts';
export { doctorContext } from './context.ts';
export { formatReport } from './format.ts';
export { type DoctorOptions, doctorCommand, loadChecks, runDoctor } from './runner.ts';
export type { Check, CheckStatus, DoctorCheck, DoctorContext, DoctorReport, Finding } from './types.ts';

/** The checks that need no network: callback URL, cookie domain vs. hosts, secrets' strength. */
export function checkSettings(config: Config): Check[] {
  const tag = (topic: string) => (f: { status: Check['status']; message: string; topic?: string }) => ({
    topic: f.topic ?? topic,
    status: f.status,
    message: f.message,
  });
  return [
    ...checkCallbackSetting(config).map(tag('redirect URL')),
    ...checkCookies(config).map(tag('cookie domain')),
    ...checkSecrets(config).map(tag('secrets')),
  ];
}
