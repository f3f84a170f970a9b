import { checkTlsFiles } from './decisionListener.ts';
import type { PartialValues } from './rules.ts';
import type { AdminListener } from './types.ts';

/** Shorter tokens are refused: the admin API ends anyone's sessions. */
export const MIN_ADMIN_TOKEN_LENGTH = 32;

/**
 * ADMIN_PORT with ADMIN_TOKEN_FILE and/or mutual TLS (ADMIN_TLS_*) → the admin API's listener, or
 * undefined (no admin API). Without a client CA a token file is required; it must be readable and
 * hold a long enough token now (it is read again at every call).
 */
export function adminListener(
  v: PartialValues,
  readFile: (path: string) => string,
  problems: string[],
): AdminListener | undefined {
  const certFile = v.ADMIN_TLS_CERT_FILE;
  const keyFile = v.ADMIN_TLS_KEY_FILE;
  const clientCaFile = v.ADMIN_TLS_CLIENT_CA_FILE;
  const tokenFile = v.ADMIN_TOKEN_FILE;
  if (v.ADMIN_PORT === undefined) {
    if (certFile || keyFile || clientCaFile || tokenFile) {
      problems.push('ADMIN_TOKEN_FILE and ADMIN_TLS_* need ADMIN_PORT');
    }
    return undefined;
  }
  if (v.ADMIN_PORT !== 0 && (v.ADMIN_PORT === v.PORT || v.ADMIN_PORT === v.AUTH_PORT)) {
    problems.push('ADMIN_PORT must differ from PORT and AUTH_PORT');
  }
  if (!tokenFile && !clientCaFile) {
    problems.push(
      'ADMIN_PORT needs ADMIN_TOKEN_FILE (a bearer token from a Secret) or mutual TLS (ADMIN_TLS_CLIENT_CA_FILE)',
    );
  }
  if (tokenFile) checkTokenFile(tokenFile, readFile, problems);
  const token = { host: v.ADMIN_HOST ?? '127.0.0.1', ...(tokenFile ? { tokenFile } : {}) };
  if (!certFile && !keyFile && !clientCaFile) return Object.freeze({ port: v.ADMIN_PORT, ...token });
  if (!certFile || !keyFile) {
    problems.push(
      'ADMIN_TLS_CERT_FILE and ADMIN_TLS_KEY_FILE go together (and ADMIN_TLS_CLIENT_CA_FILE needs both)',
    );
    return undefined;
  }
  checkTlsFiles({ certFile, keyFile, clientCaFile }, readFile, problems, 'ADMIN_TLS');
  return Object.freeze({
    port: v.ADMIN_PORT,
    ...token,
    tls: Object.freeze({ certFile, keyFile, ...(clientCaFile ? { clientCaFile } : {}) }),
  });
}

function checkTokenFile(file: string, readFile: (path: string) => string, problems: string[]): void {
  let text: string;
  try {
    text = readFile(file);
  } catch (error) {
    problems.push(
      `ADMIN_TOKEN_FILE ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
    return;
  }
  if (text.trim().length < MIN_ADMIN_TOKEN_LENGTH) {
    problems.push(
      `ADMIN_TOKEN_FILE ${file} must hold a token of at least ${MIN_ADMIN_TOKEN_LENGTH} characters`,
    );
  }
}
