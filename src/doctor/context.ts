import type { Config } from '../config.ts';
import { type DiscoveryDocument, profileFrom } from '../oidc/profile.ts';
import { reason } from './reason.ts';
import type { DiscoveryFailure, DoctorContext, ProviderFacts } from './types.ts';

/** The context every check gets: the configuration, `--host`s, and discovery fetched once. */

const REQUIRED = ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const;

export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

async function fetchDocument(url: string, timeoutMs: number): Promise<Response | DiscoveryFailure> {
  try {
    return await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
  } catch (error) {
    return {
      topic: 'discovery',
      problem: `${url} cannot be reached (${reason(error)}); is OIDC_ISSUER_URL right?`,
    };
  }
}

/** The discovery document, or the first reason it cannot serve a login. */
export async function readDiscovery(
  config: Config,
  timeoutMs: number,
): Promise<ProviderFacts | DiscoveryFailure> {
  const url = discoveryUrl(config.issuerUrl);
  const response = await fetchDocument(url, timeoutMs);
  if (!(response instanceof Response)) return response;
  if (response.status !== 200) {
    await response.body?.cancel();
    return {
      topic: 'discovery',
      problem: `${url} answered HTTP ${response.status}; OIDC_ISSUER_URL must be the issuer itself, as the provider names it (e.g. https://dex.example.com/dex, https://keycloak.example.com/realms/<realm>)`,
    };
  }
  let document: DiscoveryDocument;
  try {
    document = (await response.json()) as DiscoveryDocument;
  } catch {
    return { topic: 'discovery', problem: `${url} did not answer with JSON` };
  }
  const missing = REQUIRED.find((field) => typeof document[field] !== 'string');
  if (missing) return { topic: 'discovery', problem: `the discovery document has no ${missing}` };
  return { url, document, profile: profileFrom(document, config), serverDate: response.headers.get('date') };
}

export function callbacksOf(config: Config, hosts: readonly string[]): string[] {
  if (config.redirectUrl) return [config.redirectUrl];
  return hosts.map((h) => `${config.cookieSecure ? 'https' : 'http'}://${h}/oauth2/callback`);
}

export interface ContextOptions {
  readonly hosts?: readonly string[];
  readonly timeoutMs?: number;
  readonly authenticationConfig?: string;
  readonly token?: string;
  readonly readFile?: (path: string) => string;
}

export function doctorContext(config: Config, options: ContextOptions = {}): DoctorContext {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const hosts = options.hosts ?? [];
  let discovery: Promise<ProviderFacts | DiscoveryFailure> | undefined;
  return {
    config,
    hosts,
    timeoutMs,
    discovery: () => {
      discovery ??= readDiscovery(config, timeoutMs);
      return discovery;
    },
    callbacks: () => callbacksOf(config, hosts),
    identity: {
      ...(options.authenticationConfig ? { authenticationConfig: options.authenticationConfig } : {}),
      ...(options.token ? { token: options.token } : {}),
      ...(options.readFile ? { readFile: options.readFile } : {}),
    },
  };
}
