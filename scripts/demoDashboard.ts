/**
 * The demo's sample dashboard: what an upstream behind the gateway receives (the user, the groups,
 * the decoded ID token), with links to the other demo host, the kubeconfig page and sign-out.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { escapeHtml } from '../src/http/views.ts';

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

/** The request handler of the sample dashboard served on `urls` (the gateway's dashboard hosts). */
export function sampleDashboard(
  urls: readonly string[],
  authHomeUrl: string,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => dashboard(urls, authHomeUrl, req, res);
}

function dashboard(
  urls: readonly string[],
  authHomeUrl: string,
  req: IncomingMessage,
  res: ServerResponse,
): void {
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
<header><strong>Sample dashboard</strong><nav aria-label="Demo">${others}<a href="/kubeconfig">Kubeconfig</a><a href="${escapeHtml(authHomeUrl)}">Sign-in state</a><a href="/oauth2/userinfo">/oauth2/userinfo</a><a href="/oauth2/sign_out">Sign out</a></nav></header>
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
