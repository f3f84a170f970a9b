import { type DoctorCheck, type DoctorContext, type Finding, isFacts, ok, warning } from '../types.ts';

/** OIDC_SCOPES against scopes_supported (serve warns the same at start) and offline_access. */
export async function checkScopes(ctx: DoctorContext): Promise<Finding[]> {
  const facts = await ctx.discovery();
  if (!isFacts(facts)) return [];
  const { profile } = facts;
  const findings: Finding[] = [];
  if (profile.unlistedScopes.length > 0) {
    findings.push(
      warning(
        `${profile.name} does not list ${profile.unlistedScopes.join(', ')} in scopes_supported (OIDC_SCOPES): they are sent anyway, and a provider that refuses them fails every login (see the redirect URL check)`,
      ),
    );
  }
  if (!ctx.config.scopes.includes('offline_access')) {
    findings.push(
      warning(
        `OIDC_SCOPES lacks offline_access: ${profile.name} issues no refresh token, so each session ends when its ID token expires (a silent prompt=none login follows where the provider still knows the user)`,
      ),
    );
  }
  if (findings.length > 0) return findings;
  return [
    ok(
      Array.isArray(facts.document.scopes_supported)
        ? `${profile.name} lists every scope of OIDC_SCOPES`
        : `${profile.name} does not list its scopes (no scopes_supported); OIDC_SCOPES is sent as configured`,
    ),
  ];
}

export const check: DoctorCheck = { order: 30, topic: 'scopes', run: checkScopes };
