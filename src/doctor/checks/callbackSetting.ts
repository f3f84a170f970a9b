import type { Config } from '../../config.ts';
import { type DoctorCheck, type Finding, problem, warning } from '../types.ts';

/** REDIRECT_URL itself: the path the service serves, and https while cookies are Secure. */
export function checkCallbackSetting(config: Config): Finding[] {
  if (!config.redirectUrl) return [];
  const findings: Finding[] = [];
  const url = new URL(config.redirectUrl);
  const localhost = url.hostname === 'localhost' || url.hostname.endsWith('.localhost');
  if (url.pathname !== '/oauth2/callback') {
    findings.push(problem(`REDIRECT_URL path is ${url.pathname}; the service serves /oauth2/callback`));
  }
  if (url.protocol === 'http:' && config.cookieSecure && !localhost) {
    findings.push(
      problem(
        'REDIRECT_URL is http:// but COOKIE_SECURE=true: browsers drop Secure cookies on http, so every login would loop; use https',
      ),
    );
  } else if (url.protocol === 'http:' && !localhost) {
    findings.push(warning('REDIRECT_URL is http://: the session cookie travels in clear text'));
  }
  return findings;
}

export const check: DoctorCheck = {
  order: 61,
  topic: 'redirect URL',
  run: (ctx) => checkCallbackSetting(ctx.config),
};
