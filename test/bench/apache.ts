/**
 * Apache httpd with mod_auth_openidc (Debian: `apt-get install apache2
 * libapache2-mod-auth-openidc`) as the peer the issue compares against: its session cache in the
 * same Redis, logged in through the same Dex stand-in, answering `/auth` with 200 and the ID token
 * in `Authorization`. Optional: `available()` is false when either is missing, and the benchmark
 * then lists the issue's reference number instead.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, spawnTracked, type TrackedProcess, tcpAccepts, waitUntil } from '../support/redis.ts';

const HTTPD = process.env['APACHE_BIN'] ?? '/usr/sbin/apache2';
const MODULES = process.env['APACHE_MODULES'] ?? '/usr/lib/apache2/modules';

export function apacheAvailable(): boolean {
  return existsSync(HTTPD) && existsSync(join(MODULES, 'mod_auth_openidc.so'));
}

export interface ApacheOptions {
  readonly port: number;
  /** The public name the browser uses (`app.localhost:<port>`). */
  readonly host: string;
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redisPort: number;
}

export interface Apache {
  /** The parent and its worker processes. */
  pids(): number[];
  version(): string;
  stop(): Promise<void>;
}

/** The pids of `parent` and its direct children (Apache's workers). */
function withChildren(parent: number | undefined): number[] {
  if (parent === undefined) return [];
  const pids = [parent];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export async function startApache(o: ApacheOptions): Promise<Apache> {
  const dir = await makeTempDir('apache');
  chmodSync(dir, 0o755); // the workers run as www-data
  mkdirSync(join(dir, 'htdocs'));
  writeFileSync(join(dir, 'htdocs', 'auth'), '');
  const modules = [
    ['mpm_event_module', 'mod_mpm_event.so'],
    ['unixd_module', 'mod_unixd.so'],
    ['authn_core_module', 'mod_authn_core.so'],
    ['authz_core_module', 'mod_authz_core.so'],
    ['authz_user_module', 'mod_authz_user.so'],
    ['headers_module', 'mod_headers.so'],
    ['auth_openidc_module', 'mod_auth_openidc.so'],
  ].filter(([, file]) => existsSync(join(MODULES, file as string)));
  const discovery = new URL(
    '.well-known/openid-configuration',
    o.issuer.endsWith('/') ? o.issuer : `${o.issuer}/`,
  );
  const conf = `
ServerRoot ${dir}
ServerName ${o.host}
Listen 127.0.0.1:${o.port}
PidFile ${dir}/httpd.pid
ErrorLog ${dir}/error.log
LogLevel warn
${modules.map(([name, file]) => `LoadModule ${name} ${MODULES}/${file}`).join('\n')}
User www-data
Group www-data
StartServers 2
ServerLimit 4
ThreadsPerChild 32
MaxRequestWorkers 128
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 65
DocumentRoot ${dir}/htdocs
OIDCProviderMetadataURL ${discovery.href}
OIDCClientID ${o.clientId}
OIDCClientSecret ${o.clientSecret}
OIDCRedirectURI http://${o.host}/oauth2/callback
OIDCCryptoPassphrase ${randomBytes(24).toString('hex')}
OIDCScope "openid profile email groups offline_access"
OIDCCacheType redis
OIDCRedisCacheServer 127.0.0.1:${o.redisPort}
OIDCSessionType server-cache
OIDCPassIDTokenAs serialized
OIDCPassClaimsAs environment
<Directory ${dir}/htdocs>
  AuthType openid-connect
  Require valid-user
  Header always set Cache-Control no-store
  Header set Authorization "Bearer %{OIDC_id_token}e"
  Header set X-Auth-Request-User "%{OIDC_CLAIM_email}e"
  Header set X-Auth-Request-Email "%{OIDC_CLAIM_email}e"
  Header set X-Auth-Request-Groups "%{OIDC_CLAIM_groups}e"
</Directory>
`;
  writeFileSync(join(dir, 'httpd.conf'), conf);
  const proc: TrackedProcess = spawnTracked(HTTPD, ['-DFOREGROUND', '-f', join(dir, 'httpd.conf')], {
    name: 'apache2',
    cwd: dir,
  });
  const errors = (): string => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8').slice(-4000);
    } catch {
      return '';
    }
  };
  try {
    await waitUntil('apache2 to listen', () => tcpAccepts(o.port), { proc, timeoutMs: 15_000 });
  } catch (error) {
    await proc.stop('SIGKILL');
    throw new Error(`${(error as Error).message}\n${errors()}`);
  }
  const version = spawnTracked(HTTPD, ['-v'], { name: 'apache2 -v' });
  await version.exited;
  const httpd = /Apache\/(\S+)/.exec(version.output())?.[1] ?? 'unknown';
  return {
    pids: () => withChildren(proc.running() ? proc.child.pid : undefined),
    version: () => `Apache ${httpd}`,
    async stop() {
      // SIGWINCH is Apache's graceful stop; SIGTERM stops at once; the workers follow the parent.
      await proc.stop('SIGTERM', 5_000);
    },
  };
}
