import type { DexUser } from './users.ts';
import { escapeHtml } from './wire.ts';

/**
 * The stand-in's pages: Dex's password form (its field names and the 401 on a wrong password),
 * optionally the demo users under it, and errors.
 */

/** Dex's look (its light theme: a centred panel, the blue primary button), self-contained. */
const PAGE_STYLE = `:root{color-scheme:light dark;--bg:#f3f5f8;--panel:#fff;--fg:#1b1f24;--muted:#5b6570;--border:#d3d9e0;--accent:#3f7fe6;--accent-dark:#2b63c0;--error-bg:#fdecea;--error:#a1261b}
@media (prefers-color-scheme:dark){:root{--bg:#0f141a;--panel:#18202a;--fg:#e6edf3;--muted:#a0abb7;--border:#333e4a;--accent:#5b95f0;--accent-dark:#3f7fe6;--error-bg:#3a1714;--error:#ffb4ab}}
*{box-sizing:border-box}body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.dex-header{width:100%;padding:1rem 1.5rem;display:flex;align-items:center;gap:.6rem;font-weight:600;letter-spacing:.02em}
.dex-logo{display:inline-grid;place-items:center;width:2rem;height:2rem;border-radius:.5rem;background:var(--accent);color:#fff;font-size:.95rem}
.theme-panel{width:min(26rem,calc(100% - 2rem));margin:2rem 0 1rem;background:var(--panel);border:1px solid var(--border);border-radius:12px;padding:2rem;box-shadow:0 4px 18px rgb(0 0 0 / 8%)}
.theme-heading{margin:0 0 1.25rem;font-size:1.35rem;text-align:center}
.theme-form-row{margin-bottom:1rem}.theme-form-label{display:block;font-size:.9rem;font-weight:600;margin-bottom:.3rem}
.theme-form-input{width:100%;font:inherit;padding:.55rem .7rem;border:1px solid var(--border);border-radius:6px;background:var(--panel);color:var(--fg)}
.theme-form-input:focus{outline:3px solid color-mix(in srgb,var(--accent) 45%,transparent);border-color:var(--accent)}
.dex-btn{width:100%;font:inherit;font-weight:600;padding:.6rem;border:0;border-radius:6px;background:var(--accent);color:#fff;cursor:pointer}
.dex-btn:hover,.dex-btn:focus-visible{background:var(--accent-dark)}
.dex-error-box{background:var(--error-bg);color:var(--error);border-radius:6px;padding:.6rem .8rem;margin-bottom:1rem;font-size:.95rem}
.demo-users{width:min(26rem,calc(100% - 2rem));margin:0 0 2rem;background:var(--panel);border:1px dashed var(--border);border-radius:12px;padding:1rem 1.5rem;font-size:.92rem}
.demo-users h2{font-size:1rem;margin:0 0 .4rem}.demo-users p{margin:.2rem 0 .6rem;color:var(--muted)}
.demo-users ul{list-style:none;margin:0;padding:0}.demo-users li{display:flex;flex-wrap:wrap;gap:.1rem .6rem;align-items:baseline;padding:.25rem 0;border-top:1px solid var(--border)}
.demo-users .fill{font:inherit;font-family:ui-monospace,monospace;background:none;border:0;padding:0;color:var(--accent);cursor:pointer;text-decoration:underline}
.demo-users .note{color:var(--muted);font-size:.85rem}code{font-family:ui-monospace,monospace}`;

/** Clicking a demo user fills the form (the page works without it). */
const FILL_SCRIPT = `document.querySelectorAll('.fill').forEach(function(b){b.addEventListener('click',function(){document.getElementById('login').value=b.dataset.login;var p=document.getElementById('password');p.value=b.dataset.password;p.focus();});});`;

function page(title: string, body: string, script = ''): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<header class="dex-header"><span class="dex-logo" aria-hidden="true">dex</span><span>Dex stand-in</span></header>
${body}
${script ? `<script>${script}</script>` : ''}
</body>
</html>
`;
}

/** The demo accounts under the form (the demo shows them: the first page a newcomer sees). */
function demoUsersPanel(users: readonly DexUser[]): string {
  const shared = users.every((u) => u.password === users[0]?.password) ? users[0]?.password : undefined;
  const items = users.map((u) => {
    const groups = u.groups.length > 3 ? `${u.groups.length} groups` : u.groups.join(', ') || 'no groups';
    const notes = [
      groups,
      u.emailVerified ? '' : 'email not verified',
      shared ? '' : `password ${u.password}`,
    ]
      .filter(Boolean)
      .join(' · ');
    return `<li><button type="button" class="fill" data-login="${escapeHtml(u.login)}" data-password="${escapeHtml(u.password)}">${escapeHtml(u.login)}</button><span class="note">${escapeHtml(notes)}</span></li>`;
  });
  const password = shared
    ? `<p>The password is <code>${escapeHtml(shared)}</code> for all of them; click one to fill in the form.</p>`
    : '<p>Click one to fill in the form.</p>';
  return `<section class="demo-users" aria-labelledby="demo-users-title"><h2 id="demo-users-title">Demo users</h2>${password}<ul>${items.join('')}</ul></section>`;
}

export function loginPage(
  action: string,
  opts: { login?: string; error?: boolean; demoUsers?: readonly DexUser[] } = {},
): string {
  const error = opts.error
    ? '<div id="login-error" class="dex-error-box" role="alert">Invalid Email Address and password.</div>'
    : '';
  const body = `<main class="theme-panel">
<h2 class="theme-heading">Log in to Your Account</h2>
<form method="post" action="${escapeHtml(action)}">
<div class="theme-form-row">
<label class="theme-form-label" for="login">Email Address</label>
<input tabindex="1" required id="login" name="login" type="text" class="theme-form-input" placeholder="email address" autocomplete="username" value="${escapeHtml(opts.login ?? '')}"${opts.login ? '' : ' autofocus'}>
</div>
<div class="theme-form-row">
<label class="theme-form-label" for="password">Password</label>
<input tabindex="2" required id="password" name="password" type="password" class="theme-form-input" placeholder="password" autocomplete="current-password"${opts.login ? ' autofocus' : ''}>
</div>
${error}
<button tabindex="3" id="submit-login" type="submit" class="dex-btn theme-btn--primary">Login</button>
</form>
</main>
${opts.demoUsers?.length ? demoUsersPanel(opts.demoUsers) : ''}`;
  return page('dex', body, opts.demoUsers?.length ? FILL_SCRIPT : '');
}

export function errorPage(title: string, message: string): string {
  return page(
    'dex',
    `<main class="theme-panel"><h2 class="theme-heading">${escapeHtml(title)}</h2><p>${escapeHtml(message)}</p></main>`,
  );
}
