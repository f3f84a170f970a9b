import type { Config } from '../../config.ts';
import { type DoctorCheck, type Finding, ok, problem, warning } from '../types.ts';

/** COOKIE_DOMAIN covers the allowed redirect domains and the callback host; a central host has one. */

const within = (host: string, domain: string): boolean => {
  const d = domain.replace(/^\./, '').toLowerCase();
  const h = host.replace(/^\./, '').replace(/:\d+$/, '').toLowerCase();
  return h === d || h.endsWith(`.${d}`);
};

function domainProblems(config: Config, domain: string, redirectHost: string | undefined): Finding[] {
  // A public suffix or single label never gets here: the configuration refuses it.
  const findings = config.allowedRedirectDomains
    .filter((allowed) => !within(allowed.replace(/^\*\./, ''), domain))
    .map((allowed) =>
      problem(
        `ALLOWED_REDIRECT_DOMAINS entry ${allowed} is outside COOKIE_DOMAIN ${domain}: a user sent there never presents the session cookie and logs in again and again`,
      ),
    );
  if (redirectHost && !within(redirectHost, domain)) {
    findings.push(
      problem(
        `REDIRECT_URL host ${redirectHost} is outside COOKIE_DOMAIN ${domain}: the cookie set by the callback cannot be set for ${domain}`,
      ),
    );
  }
  return findings;
}

function hostOnlyProblems(config: Config, redirectHost: string | undefined): Finding[] {
  if (!redirectHost) return [];
  const others = config.allowedRedirectDomains.filter(
    (d) => d.replace(/:\d+$/, '') !== redirectHost.replace(/:\d+$/, ''),
  );
  if (others.length === 0) return [];
  return [
    problem(
      `REDIRECT_URL sends every login to ${redirectHost}, but COOKIE_DOMAIN is unset, so the session cookie stays on that host and ${others.join(', ')} never see it (a login loop): set COOKIE_DOMAIN to a domain covering them all`,
    ),
  ];
}

export function checkCookies(config: Config): Finding[] {
  const domain = config.cookieDomain;
  const redirectHost = config.redirectUrl ? new URL(config.redirectUrl).host : undefined;
  const findings = domain
    ? domainProblems(config, domain, redirectHost)
    : hostOnlyProblems(config, redirectHost);
  const fine = findings.length === 0;
  if (!config.cookieSecure) {
    findings.push(warning('COOKIE_SECURE=false: cookies are sent over plain http too (demos only)'));
  }
  if (fine && !domain) findings.push(ok('host-only session cookie (each protected host logs in on its own)'));
  if (fine && domain) {
    const covered = [...config.allowedRedirectDomains, ...(redirectHost ? [redirectHost] : [])].join(', ');
    findings.push(ok(`COOKIE_DOMAIN ${domain} covers ${covered || 'the protected hosts'}`));
  }
  return findings;
}

export const check: DoctorCheck = {
  order: 70,
  topic: 'cookie domain',
  run: (ctx) => checkCookies(ctx.config),
};
