import type { Config } from '../../config.ts';
import type { DoctorCheck, DoctorContext, Finding, ProviderFacts } from '../types.ts';
import { isFacts, ok, problem, warning } from '../types.ts';

/** Discovery answers, names the issuer byte for byte, and agrees on the time; which provider it is. */

function issuerFinding(facts: ProviderFacts, config: Config): Finding {
  const issuer = facts.document.issuer;
  if (issuer === config.issuerUrl) {
    return ok('discovery answered and its issuer equals OIDC_ISSUER_URL byte for byte', 'issuer');
  }
  const hint =
    typeof issuer === 'string' && issuer.replace(/\/$/, '') === config.issuerUrl.replace(/\/$/, '')
      ? ' (they differ only in the trailing slash, which the token check and the API server both compare)'
      : '';
  return problem(
    `the provider calls itself ${JSON.stringify(issuer)} but OIDC_ISSUER_URL is ${JSON.stringify(config.issuerUrl)}: they must be equal byte for byte${hint}`,
    'issuer',
  );
}

function clockFindings(facts: ProviderFacts, now: number): Finding[] {
  if (!facts.serverDate) return [];
  const skew = Math.abs(Date.parse(facts.serverDate) - now);
  if (!Number.isFinite(skew) || skew <= 30_000) return [];
  return [
    warning(
      `this machine's clock differs from the provider's by ${Math.round(skew / 1000)} s: token expiry checks will misjudge`,
      'clock',
    ),
  ];
}

function providerFinding(facts: ProviderFacts): Finding {
  return ok(
    facts.profile.isDex
      ? 'discovery shows Dex (its <issuer>/auth, /token and /keys endpoints): Dex-specific hints apply'
      : 'discovery shows a generic OpenID provider (no product-specific hints apply)',
    'provider',
  );
}

export async function checkDiscovery(ctx: DoctorContext, now = Date.now()): Promise<Finding[]> {
  const facts = await ctx.discovery();
  if (!isFacts(facts)) return [problem(facts.problem, facts.topic)];
  return [issuerFinding(facts, ctx.config), ...clockFindings(facts, now), providerFinding(facts)];
}

export const check: DoctorCheck = { order: 10, topic: 'discovery', run: (ctx) => checkDiscovery(ctx) };
