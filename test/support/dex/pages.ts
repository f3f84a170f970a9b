import { escapeHtml } from './wire.ts';

/** The stand-in's pages: Dex's password form (its field names and the 401 on a wrong password) and errors. */

export function loginPage(action: string, opts: { login?: string; error?: boolean } = {}): string {
  const error = opts.error
    ? '<div id="login-error" class="dex-error-box" role="alert">Invalid Email Address and password.</div>'
    : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dex</title>
</head>
<body>
<main class="theme-panel">
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
</body>
</html>
`;
}

export function errorPage(title: string, message: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dex</title></head>
<body><h2 class="theme-heading">${escapeHtml(title)}</h2><p>${escapeHtml(message)}</p></body></html>
`;
}
