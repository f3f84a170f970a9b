import { probeAuthorizationUrl } from '../../oidc/probe.ts';
import {
  type DoctorCheck,
  type DoctorContext,
  type Finding,
  isFacts,
  ok,
  type ProviderFacts,
  problem,
  reason,
  skipped,
  warning,
} from '../types.ts';

/**
 * The callback URLs, asked of the authorization endpoint with the login's own parameters (no
 * login happens). What each answer proves: a redirect back to the callback with `error=` means
 * the callback is registered (providers send errors only to registered URIs) but the request was
 * refused for that reason; its login page (200, or a redirect elsewhere) means client and callback
 * were accepted, since providers check both before they show it; a 4xx means one of them is not.
 */

function interpret(ctx: DoctorContext, facts: ProviderFacts, callback: string, response: Response): Finding {
  const { clientId } = ctx.config;
  const location = response.headers.get('location') ?? '';
  if (response.status >= 300 && response.status < 400 && location.startsWith(callback)) {
    const error = new URL(location).searchParams.get('error');
    if (error) {
      return problem(
        `${facts.profile.name} knows the callback ${callback} but refused the login request: ${error}${error === 'invalid_scope' ? ' (check OIDC_SCOPES)' : ''}`,
      );
    }
  }
  if (response.status >= 500) {
    return warning(
      `could not be tested: the authorization endpoint answered HTTP ${response.status} for ${callback}`,
    );
  }
  if (response.status >= 400) {
    const where = facts.profile.isDex
      ? "the client's redirectURIs in Dex"
      : `the redirect URIs of client "${clientId}" at the identity provider`;
    return problem(
      `${facts.profile.name} refused a login for client "${clientId}" with callback ${callback} (HTTP ${response.status}): add it to ${where}`,
    );
  }
  return ok(
    `${facts.profile.name} accepts client "${clientId}" with callback ${callback} (it answered with its login step)`,
  );
}

async function probeCallback(ctx: DoctorContext, facts: ProviderFacts, callback: string): Promise<Finding> {
  try {
    const url = await probeAuthorizationUrl(ctx.config, facts.document, callback);
    const response = await fetch(url, { signal: AbortSignal.timeout(ctx.timeoutMs), redirect: 'manual' });
    await response.body?.cancel();
    return interpret(ctx, facts, callback, response);
  } catch (error) {
    return problem(`the authorization endpoint cannot be reached (${reason(error)})`);
  }
}

export async function checkRedirectUrls(ctx: DoctorContext): Promise<Finding[]> {
  const facts = await ctx.discovery();
  if (!isFacts(facts)) return [];
  const callbacks = ctx.callbacks();
  if (callbacks.length === 0) {
    return [
      skipped(
        `REDIRECT_URL is unset, so each protected host uses <proto>://<host>/oauth2/callback: register every one at ${facts.profile.name} (check them with \`doctor --host <host>\`)`,
      ),
    ];
  }
  const findings: Finding[] = [];
  for (const callback of callbacks) findings.push(await probeCallback(ctx, facts, callback));
  return findings;
}

export const check: DoctorCheck = { order: 60, topic: 'redirect URL', run: checkRedirectUrls };
