/**
 * `npm run demo`: the whole thing on this machine, on loopback only.
 *
 *   Dex stand-in (oidc-provider)  http://127.0.0.1:5556/dex
 *   dex-forward-auth              http://127.0.0.1:4180
 *   gateway (Traefik emulator)    http://dashboard.demo.localhost:8080, http://grafana.demo.localhost:8080
 *   sample dashboard              behind the gateway: shows who you are and the decoded ID token
 *
 * Browsers resolve *.localhost to loopback. Ports can be moved with DEMO_GATEWAY_PORT,
 * DEMO_DEX_PORT and DEMO_AUTH_PORT. Ctrl-C stops everything.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { startService } from '../src/main.ts';
import { DEMO_USERS, startDex } from '../test/support/dex.ts';
import { startTraefik } from '../test/support/traefik.ts';

const gatewayPort = Number(process.env['DEMO_GATEWAY_PORT'] ?? 8080);
const dexPort = Number(process.env['DEMO_DEX_PORT'] ?? 5556);
const authPort = Number(process.env['DEMO_AUTH_PORT'] ?? 4180);
const hosts = ['dashboard.demo.localhost', 'grafana.demo.localhost'];
const urls = hosts.map((h) => `http://${h}:${gatewayPort}`);
const clientId = 'dex-forward-auth-demo';
const clientSecret = 'demo-client-secret-not-for-production';

const escape = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

function decodeJwtPart(part: string | undefined): unknown {
  try {
    return JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

/** The sample dashboard: what an upstream behind the gateway receives. */
function dashboard(req: IncomingMessage, res: ServerResponse): void {
  const header = (name: string) => String(req.headers[name] ?? '');
  const token = header('authorization').replace(/^Bearer /, '');
  const [h, p] = token.split('.');
  const groups = header('x-auth-request-groups').split(',').filter(Boolean);
  const host = header('host');
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sample dashboard</title><style>body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem}
pre{background:#f4f6f8;padding:1rem;overflow:auto;border-radius:8px}ul.g{display:flex;flex-wrap:wrap;gap:.3rem;list-style:none;padding:0}
ul.g li{border:1px solid #ccc;border-radius:99px;padding:0 .6rem;font-size:.9rem}nav a{margin-right:1rem}</style></head><body>
<h1>Sample dashboard on ${escape(host)}</h1>
<p>You are <strong id="user">${escape(header('x-auth-request-user'))}</strong> (${escape(header('x-auth-request-email'))}).</p>
<nav><a href="/oauth2/sign_out">Sign out</a><a href="/kubeconfig">Kubeconfig</a>${urls
    .filter((u) => !u.includes(host))
    .map((u) => `<a href="${escape(u)}/">Open ${escape(new URL(u).hostname)}</a>`)
    .join('')}</nav>
<h2>Groups (${groups.length})</h2><ul class="g">${groups.map((g) => `<li>${escape(g)}</li>`).join('')}</ul>
<h2>ID token sent upstream as <code>Authorization: Bearer …</code></h2>
<h3>Header</h3><pre>${escape(JSON.stringify(decodeJwtPart(h), null, 2))}</pre>
<h3>Claims</h3><pre id="claims">${escape(JSON.stringify(decodeJwtPart(p), null, 2))}</pre>
<p>Requested: <code>${escape(req.method ?? '')} ${escape(req.url ?? '')}</code></p></body></html>`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

async function main(): Promise<void> {
  const dex = await startDex({
    port: dexPort,
    issuerPath: '/dex',
    clients: [{ clientId, clientSecret, redirectUris: urls.map((u) => `${u}/oauth2/callback`) }],
    idTokenTtl: 600,
  });

  const upstream = createServer(dashboard);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

  const config = loadConfig({
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_CLIENT_ID: clientId,
    OIDC_CLIENT_SECRET: clientSecret,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    COOKIE_SECRET: 'demo-cookie-secret-0123456789-abcdefghij',
    COOKIE_SECURE: 'false',
    COOKIE_DOMAIN: '.demo.localhost',
    ALLOWED_REDIRECT_DOMAINS: '.demo.localhost',
    PORT: String(authPort),
    LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info',
  });
  const service = await startService(config, {
    log: createLogger({ level: config.logLevel }),
    host: '127.0.0.1',
  });

  const forwardAuth = {
    address: `${service.url}/auth`,
    trustForwardHeader: true,
    authResponseHeaders: ['Authorization', 'X-Auth-Request-User', 'X-Auth-Request-Email', 'X-Auth-Request-Groups'],
    addAuthCookiesToResponse: ['_forward_auth'],
  };
  const gateway = await startTraefik({
    port: gatewayPort,
    routes: [
      // Pages and JSON of the service are reached on a direct route (DESIGN §2).
      { pathPrefix: '/oauth2/userinfo', service: service.url },
      { pathPrefix: '/kubeconfig', service: service.url },
      ...hosts.map((host) => ({ host, forwardAuth, service: upstreamUrl })),
    ],
  });

  const users = DEMO_USERS.map((u) => `    ${u.login.padEnd(26)} password: ${u.password}   groups: ${u.groups.length > 4 ? `${u.groups.length} groups` : u.groups.join(', ') || '-'}${u.emailVerified ? '' : '   (email not verified → 403)'}`);
  process.stdout.write(`
dex-forward-auth demo is running (loopback only). Open:

    ${urls[0]}/
    ${urls[1]}/          (same cookie domain: no second login)

Log in at the Dex stand-in with one of:
${users.join('\n')}

    Dex stand-in   ${dex.issuer}
    forward-auth   ${service.url}  (/healthz, /readyz, /metrics)
    gateway        Traefik ForwardAuth emulator on :${gatewayPort}

Ctrl-C stops everything.
`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping…\n');
    await gateway.close();
    await service.close();
    await new Promise((resolve) => upstream.close(resolve));
    await dex.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed to start: ${(error as Error).message}\n`);
  process.exit(1);
});
