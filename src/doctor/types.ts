import type { Config } from '../config.ts';
import type { DiscoveryDocument } from '../oidc/profile.ts';
import type { ProviderProfile } from '../oidc/types.ts';

/** The vocabulary of `doctor`: a check, what it finds, and the report. */

export type CheckStatus = 'ok' | 'problem' | 'warning' | 'skipped';

/** One line of the report. */
export interface Check {
  /** Short topic, e.g. "discovery", "client credentials". */
  readonly topic: string;
  readonly status: CheckStatus;
  readonly message: string;
}

/** What a check returns: a line, its topic defaulting to the check's. */
export interface Finding {
  readonly status: CheckStatus;
  readonly message: string;
  readonly topic?: string;
}

export interface DoctorReport {
  readonly checks: readonly Check[];
  readonly problems: number;
  readonly warnings: number;
}

/** The provider as discovery showed it, when its document could be read and has what a login needs. */
export interface ProviderFacts {
  readonly url: string;
  readonly document: DiscoveryDocument;
  readonly profile: ProviderProfile;
  /** The Date header of the discovery answer (clock comparison). */
  readonly serverDate: string | null;
}

/** Why the discovery document could not be used (the discovery check reports it). */
export interface DiscoveryFailure {
  readonly problem: string;
  readonly topic: string;
}

export interface DoctorContext {
  readonly config: Config;
  /** Protected hosts given with `--host`, for their per-host callback URLs. */
  readonly hosts: readonly string[];
  /** Per network call, ms. */
  readonly timeoutMs: number;
  /** The discovery document, fetched once for every check that needs it. */
  discovery(): Promise<ProviderFacts | DiscoveryFailure>;
  /** The callback URLs a login uses: REDIRECT_URL, or one per `--host`. */
  callbacks(): readonly string[];
  /** For the AuthenticationConfiguration check: `--authentication-config`, `--token` (never printed). */
  readonly identity: IdentityOptions;
}

export interface IdentityOptions {
  readonly authenticationConfig?: string;
  readonly token?: string;
  readonly readFile?: (path: string) => string;
}

/**
 * A check: one file in src/doctor/checks/ exporting `check` (the runner finds it there). `run`
 * gets the shared context and returns its findings; it never throws for a configuration or
 * network problem.
 */
export interface DoctorCheck {
  /** Place in the report: lower first (10 discovery … 90 redis). */
  readonly order: number;
  /** The topic of its findings unless a finding names another. */
  readonly topic: string;
  run(ctx: DoctorContext): Promise<readonly Finding[]> | readonly Finding[];
}

/** A finding of one status: `ok('…')`, `problem('…', 'topic')`. */
const finding =
  (status: CheckStatus) =>
  (message: string, topic?: string): Finding => ({ status, message, ...(topic ? { topic } : {}) });

export const ok = finding('ok');
export const problem = finding('problem');
export const warning = finding('warning');
export const skipped = finding('skipped');

export function isFacts(value: ProviderFacts | DiscoveryFailure): value is ProviderFacts {
  return 'document' in value;
}

/** "timed out", or the real cause under a failed fetch: `fetch failed: connect ECONNREFUSED …`. */
export { reason } from './reason.ts';
