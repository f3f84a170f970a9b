import { probeTokenEndpoint, type TokenProbe, type TokenProbeOptions } from '../../oidc/probe.ts';
import { changedByFormEncoding } from '../../oidc/profile.ts';
import type { TokenAuthMethod } from '../../oidc/types.ts';
import type { DoctorCheck, DoctorContext, Finding, ProviderFacts } from '../types.ts';
import { isFacts, ok, problem, warning } from '../types.ts';

/**
 * The client credentials, tested exactly as login uses them: the token endpoint is asked to
 * redeem a made-up code with the chosen client authentication. What each answer proves:
 * - invalid_grant (or invalid_code): the provider judged the code, which it does only after it
 *   authenticated the client — the credentials are right;
 * - 401 / invalid_client: the credentials were refused (for a secret with punctuation in Basic,
 *   the encoding is tried both ways to tell a wrong secret from a provider that does not decode);
 * - unauthorized_client: the client authenticated but may not use this grant — not bad credentials;
 * - invalid_request: proves nothing, except at Dex, which authenticates the client first (spec A4).
 */

const PLACEHOLDER_CALLBACK = 'https://doctor.invalid/oauth2/callback';
const JUDGED_CODE = new Set(['invalid_grant', 'invalid_code']);

type Probe = typeof probeTokenEndpoint;

interface Attempt {
  readonly ctx: DoctorContext;
  readonly facts: ProviderFacts;
  readonly redirectUri: string;
  readonly probe: Probe;
}

const said = (a: TokenProbe): string =>
  `HTTP ${a.status}${a.error ? ` ${a.error}` : ' without an OAuth error'}`;
const refused = (a: TokenProbe): boolean => a.status === 401 || a.error === 'invalid_client';
const accepted = (a: TokenProbe): boolean => a.status !== undefined && !refused(a);

function how(ctx: DoctorContext, method: TokenAuthMethod): string {
  return ctx.config.tokenAuthMethod
    ? `${method}, as OIDC_TOKEN_AUTH_METHOD says`
    : `${method}, chosen from token_endpoint_auth_methods_supported`;
}

function retry(a: Attempt, options: Partial<TokenProbeOptions>): Promise<TokenProbe> {
  return a.probe(a.ctx.config, a.facts.document, {
    redirectUri: a.redirectUri,
    timeoutMs: a.ctx.timeoutMs,
    ...options,
  });
}

/** Refused: a wrong secret or key — or, for punctuation in Basic, a provider that does not decode. */
async function whyRefused(a: Attempt, answer: TokenProbe): Promise<Finding> {
  const { config } = a.ctx;
  const method = a.facts.profile.tokenAuthMethod;
  if (method === 'client_secret_basic' && changedByFormEncoding(config.clientId, config.clientSecret)) {
    if (accepted(await retry(a, { encoding: 'raw' }))) {
      return warning(
        `the provider refused the client credentials form-encoded in HTTP Basic (${said(answer)}) but accepted them unencoded: it does not decode them as RFC 6749 §2.3.1 says, and the secret has characters that encoding changes (-, +, %, : …). The service falls back to unencoded Basic by itself; OIDC_TOKEN_AUTH_METHOD=client_secret_post (where offered) or a secret of letters and digits avoids the question`,
      );
    }
    if (accepted(await retry(a, { method: 'client_secret_post' }))) {
      return problem(
        `the provider refused the client credentials in HTTP Basic (${said(answer)}) but accepted them in the request body: the encoding of the secret's punctuation in Basic is the likely cause; set OIDC_TOKEN_AUTH_METHOD=client_secret_post`,
      );
    }
  }
  const credential =
    method === 'private_key_jwt'
      ? 'its OIDC_CLIENT_PRIVATE_KEY (is the public key, with its kid, registered for the client?)'
      : 'its OIDC_CLIENT_SECRET';
  const where = a.facts.profile.isDex
    ? 'the staticClients entry in Dex'
    : 'the client registered at the identity provider';
  return problem(
    `the token endpoint rejected OIDC_CLIENT_ID "${config.clientId}" with ${credential} (${said(answer)}; ${how(a.ctx, method)}): compare them with ${where}`,
  );
}

async function verdict(a: Attempt, answer: TokenProbe): Promise<Finding> {
  const method = a.facts.profile.tokenAuthMethod;
  const url = a.facts.document.token_endpoint as string;
  if (answer.status === undefined)
    return problem(`the token endpoint ${url} cannot be reached (${answer.reason})`);
  if (refused(answer)) return whyRefused(a, answer);
  if (answer.error && JUDGED_CODE.has(answer.error)) {
    return ok(
      `the token endpoint accepted the client credentials (${how(a.ctx, method)}): it answered ${said(answer)} about a made-up code, which it judges only after authenticating the client`,
    );
  }
  if (answer.error === 'unauthorized_client') {
    return problem(
      `the client authenticated (${how(a.ctx, method)}) but may not use the authorization-code grant (${said(answer)}): allow that flow for client "${a.ctx.config.clientId}" at ${a.facts.profile.name}`,
    );
  }
  if (answer.error === 'invalid_request' && a.facts.profile.isDex) {
    return ok(
      `Dex accepted the client credentials (${how(a.ctx, method)}): it authenticates the client before it reads the request, and then answered ${said(answer)}`,
    );
  }
  return warning(
    `could not be told apart: the token endpoint answered ${said(answer)} to a made-up code, which does not show whether the client credentials (${method}) are right; the first login will`,
  );
}

export async function checkClientCredentials(
  ctx: DoctorContext,
  probe: Probe = probeTokenEndpoint,
): Promise<Finding[]> {
  const facts = await ctx.discovery();
  if (!isFacts(facts)) return [];
  const redirectUri = ctx.callbacks()[0] ?? PLACEHOLDER_CALLBACK;
  const attempt: Attempt = { ctx, facts, redirectUri, probe };
  return [await verdict(attempt, await retry(attempt, {}))];
}

export const check: DoctorCheck = {
  order: 50,
  topic: 'client credentials',
  run: (ctx) => checkClientCredentials(ctx),
};
