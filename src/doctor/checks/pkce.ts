import { type DoctorCheck, type DoctorContext, type Finding, isFacts, ok, warning } from '../types.ts';

/** PKCE S256 in discovery (code_challenge_methods_supported), and what a login does without it. */
export async function checkPkce(ctx: DoctorContext): Promise<Finding[]> {
  const facts = await ctx.discovery();
  if (!isFacts(facts)) return [];
  const methods = facts.document.code_challenge_methods_supported;
  if (!Array.isArray(methods)) {
    return [
      warning(
        `${facts.profile.name} does not advertise PKCE (no code_challenge_methods_supported): logins still send S256, which a provider without PKCE ignores, so only state and nonce bind a login to its browser`,
      ),
    ];
  }
  if (!methods.includes('S256')) {
    return [
      warning(
        `code_challenge_methods_supported lists ${methods.join(', ') || 'nothing'} but not S256: logins go without PKCE, bound to their browser by state and nonce only`,
      ),
    ];
  }
  return [ok(`${facts.profile.name} offers PKCE S256, which every login uses`)];
}

export const check: DoctorCheck = { order: 20, topic: 'pkce', run: checkPkce };
