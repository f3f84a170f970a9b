/**
 * A throw-away PKI for mutual-TLS tests, made with the machine's `openssl`: a CA, the decision
 * listener's server certificate (DNS:dex-forward-auth, IP:127.0.0.1), the proxy's client
 * certificate, and a client certificate from another CA that must be refused. EC P-256, one day.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const hasOpenssl = (): boolean => spawnSync('openssl', ['version']).status === 0;

/** Every file is in `dir`; the proxies' shipped configs read client.crt, client.key and ca.crt. */
export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly rogueCert: string;
  readonly rogueKey: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function keyPair(dir: string, name: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
}

function selfSignedCa(dir: string, name: string, subject: string): void {
  keyPair(dir, name);
  openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}.key`,
    '-subj',
    subject,
    '-days',
    '1',
    '-out',
    `${name}.crt`,
  ]);
}

function issue(dir: string, ca: string, name: string, subject: string, extensions: string): void {
  keyPair(dir, name);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.crt`,
  ]);
}

const SERVER_EXTENSIONS = 'subjectAltName=DNS:dex-forward-auth,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n';

export function makeTestPki(dir: string): TestPki {
  selfSignedCa(dir, 'ca', '/CN=dex-forward-auth decision CA');
  issue(dir, 'ca', 'server', '/CN=dex-forward-auth', SERVER_EXTENSIONS);
  issue(dir, 'ca', 'client', '/CN=proxy', 'extendedKeyUsage=clientAuth\n');
  selfSignedCa(dir, 'rogue-ca', '/CN=someone else');
  issue(dir, 'rogue-ca', 'rogue', '/CN=proxy', 'extendedKeyUsage=clientAuth\n');
  const at = (file: string) => join(dir, file);
  return {
    dir,
    caCert: at('ca.crt'),
    serverCert: at('server.crt'),
    serverKey: at('server.key'),
    clientCert: at('client.crt'),
    clientKey: at('client.key'),
    rogueCert: at('rogue.crt'),
    rogueKey: at('rogue.key'),
  };
}

/** A new server key and certificate from the same CA, written as server.key and server.crt in `dir`. */
export function reissueServerCert(pki: TestPki, dir: string): void {
  execFileSync('cp', [join(pki.dir, 'ca.crt'), join(pki.dir, 'ca.key'), dir]);
  issue(dir, 'ca', 'server', '/CN=dex-forward-auth renewed', SERVER_EXTENSIONS);
}
