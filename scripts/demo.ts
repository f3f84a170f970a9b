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
import { escapeHtml } from '../src/http/views.ts';
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
/** A public client for kubectl/kubelogin, as Dex's own examples set one up (its secret is not secret). */
const kubectlClient = { clientId: 'kubectl', clientSecret: 'kubectl-public-client' };

function decodeJwtPart(part: string | undefined): Record<string, unknown> | null {
  try {
    return JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

const STYLE = `:root{color-scheme:light dark;--bg:#f4f6f8;--card:#fff;--fg:#1b1f24;--muted:#4a5560;--accent:#0b5cad;--border:#d0d7de}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;--muted:#a3adb8;--accent:#79b8ff;--border:#3a434d}}
*{box-sizing:border-box}body{font:16px/1.55 system-ui,sans-serif;margin:0;background:var(--bg);color:var(--fg)}
header{background:var(--card);border-bottom:1px solid var(--border);padding:.75rem 1.5rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header strong{margin-right:auto}nav{display:flex;flex-wrap:wrap;gap:1rem}a{color:var(--accent)}
main{max-width:64rem;margin:1.5rem auto;padding:0 1rem}section{background:var(--card);border:1px solid var(--border);border-radius:12px;padding:1rem 1.5rem;margin-bottom:1rem}
h1{font-size:1.5rem;margin:.25rem 0 1rem}h2{font-size:1.1rem;margin:.25rem 0 .75rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
pre{background:var(--bg);border:1px solid var(--border);padding:1rem;overflow:auto;border-radius:8px;font-size:.85rem}
ul.g{display:flex;flex-wrap:wrap;gap:.3rem;list-style:none;padding:0;margin:0;max-height:10rem;overflow:auto}
ul.g li{border:1px solid var(--border);border-radius:99px;padding:0 .6rem;font-size:.85rem}
a:focus-visible{outline:3px solid var(--accent);outline-offset:2px}.muted{color:var(--muted)}`;

/** The sample dashboard: what an upstream behind the gateway receives. */
function dashboard(req: IncomingMessage, res: ServerResponse): void {
  const header = (name: string) => String(req.headers[name] ?? '');
  const token = header('authorization').replace(/^Bearer /, '');
  const [h, p] = token.split('.');
  const claims = decodeJwtPart(p);
  const groups = header('x-auth-request-groups').split(',').filter(Boolean);
  const host = header('host');
  const exp = typeof claims?.['exp'] === 'number' ? new Date(claims['exp'] * 1000) : undefined;
  const aud = claims?.['aud'];
  const others = urls
    .filter((u) => new URL(u).host !== host)
    .map((u) => `<a href="${escapeHtml(u)}/">Open ${escapeHtml(new URL(u).hostname)}</a>`)
    .join('');
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sample dashboard · ${escapeHtml(host)}</title><style>${STYLE}</style></head><body>
<header><strong>Sample dashboard</strong><nav aria-label="Demo">${others}<a href="/kubeconfig">Kubeconfig</a><a href="/oauth2/userinfo">/oauth2/userinfo</a><a href="/oauth2/sign_out">Sign out</a></nav></header>
<main>
<h1>Hello, <span id="user">${escapeHtml(header('x-auth-request-user'))}</span></h1>
<section aria-labelledby="who"><h2 id="who">What the dashboard was told</h2><dl>
<dt>Host</dt><dd>${escapeHtml(host)}</dd>
<dt>User</dt><dd>${escapeHtml(header('x-auth-request-user'))}</dd>
<dt>Email</dt><dd>${escapeHtml(header('x-auth-request-email'))}</dd>
<dt>Token audience</dt><dd>${escapeHtml(Array.isArray(aud) ? aud.join(', ') : String(aud ?? ''))}</dd>
<dt>Token expires</dt><dd>${exp ? `<time datetime="${exp.toISOString()}">${escapeHtml(exp.toUTCString())}</time>` : '–'}</dd>
<dt>Request</dt><dd><code>${escapeHtml(req.method ?? '')} ${escapeHtml(req.url ?? '')}</code></dd>
</dl></section>
<section aria-labelledby="groups"><h2 id="groups">Groups (${groups.length})</h2>${
    groups.length
      ? `<ul class="g">${groups.map((g) => `<li>${escapeHtml(g)}</li>`).join('')}</ul>`
      : '<p class="muted">none</p>'
  }</section>
<section aria-labelledby="token"><h2 id="token">ID token sent upstream as <code>Authorization: Bearer …</code></h2>
<p class="muted">Decoded, not verified: the dashboard (or the Kubernetes API server behind it) checks the signature.</p>
<h3>Header</h3><pre>${escapeHtml(JSON.stringify(decodeJwtPart(h), null, 2))}</pre>
<h3>Claims</h3><pre id="claims">${escapeHtml(JSON.stringify(claims, null, 2))}</pre></section>
</main></body></html>`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

async function main(): Promise<void> {
  const dex = await startDex({
    port: dexPort,
    issuerPath: '/dex',
    clients: [
      { clientId, clientSecret, redirectUris: urls.map((u) => `${u}/oauth2/callback`) },
      { ...kubectlClient, redirectUris: ['http://localhost:8000', 'http://localhost:18000'] },
    ],
    idTokenTtl: 600,
  });

  const upstream = createServer(dashboard);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

  const config = loadConfig({
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_CLIENT_ID: clientId,
    OIDC_CLIENT_SECRET: clientSecret,
    // The cross-client audience: the ID token handed to dashboards also suits the API server.
    OIDC_SCOPES: 'openid profile email groups offline_access audience:server:client_id:kubernetes',
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    COOKIE_SECRET: 'demo-cookie-secret-0123456789-abcdefghij',
    COOKIE_SECURE: 'false',
    COOKIE_DOMAIN: '.demo.localhost',
    ALLOWED_REDIRECT_DOMAINS: '.demo.localhost',
    KUBE_CLUSTERS: JSON.stringify([
      {
        name: 'demo',
        server: 'https://127.0.0.1:6443',
        clientId: kubectlClient.clientId,
        public: true,
        clientSecret: kubectlClient.clientSecret,
      },
    ]),
    PORT: String(authPort),
    LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info',
  });
  const service = await startService(config, {
    log: createLogger({ level: config.logLevel }),
    host: '127.0.0.1',
    drainMs: 1_000,
  });

  const forwardAuth = {
    address: `${service.url}/auth`,
    trustForwardHeader: true,
    authResponseHeaders: [
      'Authorization',
      'X-Auth-Request-User',
      'X-Auth-Request-Email',
      'X-Auth-Request-Groups',
    ],
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

  const users = DEMO_USERS.map((u) => {
    const groups = u.groups.length > 4 ? `${u.groups.length} groups` : u.groups.join(', ') || '-';
    const note = u.emailVerified ? '' : '   (email not verified → 403 page)';
    return `    ${u.login.padEnd(26)} groups: ${groups}${note}`;
  });
  process.stdout.write(`
dex-forward-auth demo is running (loopback only). Open:

    ${urls[0]}/
    ${urls[1]}/          (same cookie domain: no second login)
    ${urls[0]}/kubeconfig

Log in at the Dex stand-in with one of these (password: password):
${users.join('\n')}

    Dex stand-in   ${dex.issuer}
    forward-auth   ${service.url}  (/healthz, /readyz, /metrics)
    gateway        Traefik ForwardAuth emulator on 127.0.0.1:${gatewayPort}

Ctrl-C stops everything.
`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping…\n');
    await gateway.close();
    await service.close();
    await new Promise((resolve) => {
      upstream.close(resolve);
      upstream.closeAllConnections();
    });
    await dex.close();
    process.stdout.write('stopped.\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((error: unknown) => {
  const e = error as NodeJS.ErrnoException;
  const hint =
    e.code === 'EADDRINUSE'
      ? ' (a port is taken: set DEMO_GATEWAY_PORT, DEMO_DEX_PORT or DEMO_AUTH_PORT to free ones)'
      : '';
  process.stderr.write(`demo failed to start: ${e.message}${hint}\n`);
  process.exit(1);
});
