import { createSecureContext } from 'node:tls';
import type { PartialValues } from './rules.ts';
import type { RawSettings } from './sources.ts';
import type { DecisionListener } from './types.ts';

/**
 * AUTH_PORT and its TLS files (AUTH_TLS_*) → the decision listener, or undefined (PORT serves the
 * decisions). The files are checked by building a TLS context from them, so a key that is not the
 * certificate's, or a CA file without a certificate, stops start-up rather than the first request.
 */
export function decisionListener(
  v: PartialValues,
  readFile: (path: string) => string,
  problems: string[],
): DecisionListener | undefined {
  const certFile = v.AUTH_TLS_CERT_FILE;
  const keyFile = v.AUTH_TLS_KEY_FILE;
  const clientCaFile = v.AUTH_TLS_CLIENT_CA_FILE;
  if (v.AUTH_PORT === undefined) {
    if (certFile || keyFile || clientCaFile) {
      problems.push('AUTH_TLS_CERT_FILE, AUTH_TLS_KEY_FILE and AUTH_TLS_CLIENT_CA_FILE need AUTH_PORT');
    }
    return undefined;
  }
  if (v.AUTH_PORT !== 0 && v.AUTH_PORT === v.PORT) problems.push('AUTH_PORT must differ from PORT');
  if (!certFile && !keyFile && !clientCaFile) return Object.freeze({ port: v.AUTH_PORT });
  if (!certFile || !keyFile) {
    problems.push(
      'AUTH_TLS_CERT_FILE and AUTH_TLS_KEY_FILE go together (and AUTH_TLS_CLIENT_CA_FILE needs both)',
    );
    return undefined;
  }
  checkTlsFiles({ certFile, keyFile, clientCaFile }, readFile, problems);
  return Object.freeze({
    port: v.AUTH_PORT,
    tls: Object.freeze({ certFile, keyFile, ...(clientCaFile ? { clientCaFile } : {}) }),
  });
}

/** The TLS files of a listener (prefix `AUTH_TLS` or `ADMIN_TLS`) are readable and make a context. */
export function checkTlsFiles(
  files: { certFile: string; keyFile: string; clientCaFile: string | undefined },
  readFile: (path: string) => string,
  problems: string[],
  prefix = 'AUTH_TLS',
): void {
  const named: [string, string | undefined][] = [
    [`${prefix}_CERT_FILE`, files.certFile],
    [`${prefix}_KEY_FILE`, files.keyFile],
    [`${prefix}_CLIENT_CA_FILE`, files.clientCaFile],
  ];
  const pem: Record<string, string> = {};
  for (const [name, file] of named) {
    if (file === undefined) continue;
    try {
      pem[name] = readFile(file);
    } catch (error) {
      problems.push(`${name} ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  for (const name of [`${prefix}_CERT_FILE`, `${prefix}_CLIENT_CA_FILE`]) {
    const text = pem[name];
    if (text !== undefined && !text.includes('-----BEGIN CERTIFICATE-----')) {
      problems.push(`${name} holds no PEM certificate`);
    }
  }
  if (Object.keys(pem).length !== named.filter(([, f]) => f).length) return;
  try {
    createSecureContext({
      cert: pem[`${prefix}_CERT_FILE`],
      key: pem[`${prefix}_KEY_FILE`],
      ca: pem[`${prefix}_CLIENT_CA_FILE`],
    });
  } catch (error) {
    problems.push(`${prefix}_*: the certificate, key or CA is not usable (${(error as Error).message})`);
  }
}

/**
 * With UPSTREAM_AUTH=impersonate every 2xx carries the pod's service-account token: whoever can
 * pass for the proxy is cluster-admin. The proxies' addresses must be named, never defaulted.
 */
export function checkExplicitTrust(raw: RawSettings, v: PartialValues, problems: string[]): void {
  if (v.UPSTREAM_AUTH !== 'impersonate') return;
  if (raw.TRUSTED_PROXIES === undefined || raw.TRUSTED_PROXIES.trim() === '') {
    problems.push(
      "UPSTREAM_AUTH=impersonate needs TRUSTED_PROXIES set explicitly to the proxy's addresses (every 2xx carries the service-account token)",
    );
  }
}
