import {
  type DoctorCheck,
  type DoctorContext,
  type Finding,
  isFacts,
  ok,
  problem,
  reason,
} from '../types.ts';

/** The JWKS publishes signing keys (what ID-token and bearer checks verify with). */
export async function checkJwks(ctx: DoctorContext): Promise<Finding[]> {
  const facts = await ctx.discovery();
  if (!isFacts(facts)) return [];
  const url = facts.document.jwks_uri as string;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(ctx.timeoutMs), redirect: 'manual' });
    if (response.status !== 200) {
      await response.body?.cancel();
      return [problem(`${url} answered HTTP ${response.status}`)];
    }
    const body = (await response.json()) as { keys?: unknown };
    const keys = Array.isArray(body.keys) ? (body.keys as { kty?: unknown; use?: unknown }[]) : [];
    const signing = keys.filter((k) => typeof k.kty === 'string' && k.use !== 'enc');
    if (signing.length === 0) return [problem(`${url} publishes no signing keys`)];
    return [ok(`${url} publishes ${signing.length} signing key${signing.length === 1 ? '' : 's'}`)];
  } catch (error) {
    return [problem(`${url} cannot be read (${reason(error)})`)];
  }
}

export const check: DoctorCheck = { order: 40, topic: 'jwks', run: checkJwks };
