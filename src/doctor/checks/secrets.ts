import { type Config, cookieSecretProblem } from '../../config.ts';
import { type DoctorCheck, type Finding, ok, problem, warning } from '../types.ts';

/** Cookie secrets pass the start-up strength check (a hand-built Config may still hold a weak one), none repeated. */
export function checkSecrets(config: Config): Finding[] {
  const findings: Finding[] = [];
  let fine = true;
  const seen = new Map<string, string>();
  for (const { id, secret } of config.cookieSecrets) {
    const name = config.cookieSecrets.length > 1 ? `COOKIE_SECRETS secret "${id}"` : 'COOKIE_SECRET';
    const weak = cookieSecretProblem(name, secret);
    if (weak) {
      fine = false;
      findings.push(problem(weak));
    }
    const other = seen.get(secret);
    if (other !== undefined)
      findings.push(warning(`COOKIE_SECRETS "${id}" repeats the secret of "${other}"`));
    seen.set(secret, id);
  }
  if (config.clientSecret !== '' && config.clientSecret.length < 16) {
    findings.push(warning('OIDC_CLIENT_SECRET is shorter than 16 characters'));
  }
  if (fine) {
    const n = config.cookieSecrets.length;
    findings.push(ok(`${n} cookie secret${n === 1 ? '' : 's'} of sufficient length and variety`));
  }
  return findings;
}

export const check: DoctorCheck = { order: 80, topic: 'secrets', run: (ctx) => checkSecrets(ctx.config) };
