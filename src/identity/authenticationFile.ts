import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from '../log.ts';
import { parseAuthenticationConfiguration } from './authenticationConfig.ts';
import { type CompiledJwtAuthenticator, compileAuthenticationConfiguration } from './validation.ts';

/**
 * AUTHENTICATION_CONFIG on disk: read, validated and compiled (every CEL expression) into the
 * authenticators; then watched (its directory, so a ConfigMap's symlink swap is seen) and polled
 * every `pollMs`, like AUTHZ_CONFIG. A new file that fails validation is refused: the last good
 * one stays in force and the log says why. At start-up there is no last good file, so problems
 * are returned to stop start-up.
 */

export interface LoadedAuthentication {
  /** sha256 of the file's bytes: identities carry it, so a reload re-maps them. */
  readonly revision: string;
  readonly authenticators: readonly CompiledJwtAuthenticator[];
}

export interface AuthenticationFileOptions {
  readonly path: string;
  /** OIDC_ISSUER_URL: must be one of the issuers. */
  readonly loginIssuer: string;
  readonly allowInsecureHttp: boolean;
  readonly readFile?: (path: string) => string;
}

/** Reads and compiles the file; problems name the file and the field. Never throws. */
export function loadAuthenticationFile(
  options: AuthenticationFileOptions,
): { loaded: LoadedAuthentication; problems: [] } | { loaded: undefined; problems: string[] } {
  const at = `AUTHENTICATION_CONFIG ${options.path}`;
  let text: string;
  try {
    text = (options.readFile ?? ((p) => readFileSync(p, 'utf8')))(options.path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    return { loaded: undefined, problems: [`${at}: cannot be read (${code})`] };
  }
  const revision = createHash('sha256').update(text).digest('hex').slice(0, 16);
  const parsed = parseAuthenticationConfiguration(text);
  if (!parsed.file) return { loaded: undefined, problems: parsed.problems.map((p) => `${at}: ${p}`) };
  const { authenticators, problems } = compileAuthenticationConfiguration(parsed.file, {
    allowInsecureHttp: options.allowInsecureHttp,
  });
  if (problems.length === 0 && !authenticators.some((a) => a.issuerUrl === options.loginIssuer)) {
    problems.push(
      `jwt[].issuer.url: OIDC_ISSUER_URL ${JSON.stringify(options.loginIssuer)} must be one of the issuers (${authenticators.map((a) => JSON.stringify(a.issuerUrl)).join(', ') || 'none'}): the browser login uses it`,
    );
  }
  if (problems.length > 0) return { loaded: undefined, problems: problems.map((p) => `${at}: ${p}`) };
  return { loaded: { revision, authenticators }, problems: [] };
}

export class AuthenticationConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid authentication configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'AuthenticationConfigError';
    this.problems = problems;
  }
}

export interface WatchOptions extends AuthenticationFileOptions {
  readonly log: Logger;
  readonly pollMs?: number;
  readonly onChange: (loaded: LoadedAuthentication) => void;
  readonly onReload?: (result: 'ok' | 'error') => void;
}

/** Watches the file; calls onChange with each new good version. Returns a stop function. */
export function watchAuthenticationFile(initial: LoadedAuthentication, options: WatchOptions): () => void {
  let current = initial;
  let lastError: string | undefined;
  const check = () => {
    const result = loadAuthenticationFile(options);
    if (!result.loaded) {
      const text = result.problems.join('; ');
      if (text !== lastError) {
        lastError = text;
        options.onReload?.('error');
        options.log.warn(
          { path: options.path, problems: result.problems, revision: current.revision },
          'authentication configuration NOT reloaded; keeping the last good one',
        );
      }
      return;
    }
    lastError = undefined;
    if (result.loaded.revision === current.revision) return;
    current = result.loaded;
    options.onReload?.('ok');
    options.log.info(
      { path: options.path, revision: current.revision },
      'authentication configuration reloaded',
    );
    options.onChange(current);
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(resolve(options.path)), { persistent: false }, () => check());
    watcher.on('error', () => undefined);
  } catch {
    // polling alone
  }
  const poll = setInterval(check, options.pollMs ?? 5_000);
  poll.unref();
  return () => {
    clearInterval(poll);
    watcher?.close();
  };
}
