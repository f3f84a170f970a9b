import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/config.ts';
import { type DoctorContext, doctorContext } from '../../src/doctor/index.ts';
import type { DiscoveryFailure, ProviderFacts } from '../../src/doctor/types.ts';
import { type DiscoveryDocument, profileFrom } from '../../src/oidc/profile.ts';
import type { Dex } from './dex.ts';

/** Doctor checks against the stand-in (or a hand-made discovery document), one check at a time. */

export const DOCTOR_CLIENT_ID = 'forward-auth';
export const DOCTOR_CALLBACK = 'http://auth.apps.localhost:8080/oauth2/callback';
export const DOCTOR_COOKIE_SECRET = randomBytes(32).toString('base64url');

/** The settings of a configuration that passes, for this stand-in. */
export function doctorEnv(
  dex: Dex,
  secret: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    OIDC_CLIENT_ID: DOCTOR_CLIENT_ID,
    OIDC_CLIENT_SECRET: secret,
    COOKIE_SECRET: DOCTOR_COOKIE_SECRET,
    REDIRECT_URL: DOCTOR_CALLBACK,
    COOKIE_DOMAIN: '.apps.localhost',
    ALLOWED_REDIRECT_DOMAINS: '.apps.localhost',
    ...extra,
  };
}

export function contextFor(
  env: Record<string, string>,
  options: { hosts?: string[]; timeoutMs?: number } = {},
) {
  return doctorContext(loadConfig(env), { timeoutMs: 2_000, ...options });
}

/** A context whose discovery answers with `document` (no provider needed). */
export function contextWithDocument(
  document: DiscoveryDocument,
  env: Record<string, string> = {},
  serverDate: string | null = null,
): DoctorContext {
  const config = loadConfig({
    OIDC_ISSUER_URL: typeof document.issuer === 'string' ? document.issuer : 'https://idp.example.com/',
    OIDC_CLIENT_ID: DOCTOR_CLIENT_ID,
    OIDC_CLIENT_SECRET: 'a-client-secret-for-doctor',
    COOKIE_SECRET: DOCTOR_COOKIE_SECRET,
    REDIRECT_URL: 'https://auth.example.com/oauth2/callback',
    ...env,
  });
  const facts: ProviderFacts | DiscoveryFailure = {
    url: 'https://idp.example.com/.well-known/openid-configuration',
    document,
    profile: profileFrom(document, config),
    serverDate,
  };
  return { ...doctorContext(config), discovery: async () => facts };
}
