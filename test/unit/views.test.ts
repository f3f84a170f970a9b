import { hash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.ts';
import type { OriginalRequest } from '../../src/forward/original.ts';
import { deniedReply } from '../../src/http/decisionReplies.ts';
import { errorReply } from '../../src/http/reply.ts';
import { html, VIEW_NAMES, Views } from '../../src/http/views.ts';

const views = new Views();
const HOSTILE = '<script>alert(1)</script>"\'&';

function inline(page: string, tag: 'style' | 'script'): string {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(page);
  if (!m) throw new Error(`no <${tag}>`);
  return m[1] as string;
}

describe('views', () => {
  it.each([...VIEW_NAMES])('%s escapes every value it is given', (name) => {
    const data = Object.fromEntries(
      ['message', 'hint', 'user', 'target', 'reason', 'groups', 'providerNote', 'issuer', 'file', 'code'].map(
        (k) => [k, HOSTILE],
      ),
    );
    const page = views.render(name, HOSTILE, data, HOSTILE);
    expect(page).not.toContain('<script>alert(1)');
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;');
  });

  it('the CSP allows exactly the inline stylesheet and script every page carries', () => {
    const page = views.render('error', 'x', {}, 'id');
    const sha = (text: string) => `'sha256-${hash('sha256', text, 'base64')}'`;
    expect(views.contentSecurityPolicy).toContain(`style-src ${sha(inline(page, 'style'))};`);
    expect(views.contentSecurityPolicy).toContain(`script-src ${sha(inline(page, 'script'))};`);
    expect(views.contentSecurityPolicy).toMatch(/^default-src 'none';/);
  });

  it('names the provider as discovery knows it, Dex only for Dex, on the pages that mention it', async () => {
    const { viewWords } = await import('../../src/oidc/profile.ts');
    let isDex = false;
    const named = new Views({ globals: () => viewWords({ isDex } as never) });
    const unavailable = () => named.render('provider-unavailable', 't', { message: 'm' }, 'rid');
    const signedOut = () => named.render('signed-out', 't', {}, 'rid');
    expect(unavailable()).toContain('need the identity provider, and it did not answer');
    expect(unavailable()).not.toContain('Dex');
    expect(signedOut()).toContain('Still signed in at the identity provider');
    isDex = true;
    expect(unavailable()).toContain('need the identity provider (Dex), and it did not answer');
    expect(signedOut()).toContain('Still signed in at Dex');
    expect(named.render('signed-out', 't', { provider: HOSTILE }, 'rid')).toContain('&lt;script&gt;');
  });

  it('an unreachable identity provider gets its own page with a retry link', () => {
    const reply = errorReply(new AppError('provider_unavailable', 'Dex is away.'), 'rid');
    expect(reply.status).toBe(503);
    const page = views.render(reply.page!.view, reply.page!.title, reply.page!.data, 'rid');
    expect(page).toContain('Dex is away.');
    expect(page).toContain('<a class="button" href="">Try again</a>');
    expect(page).toContain('already signed in to keep working');
  });

  it('a failed sign-in explains in plain words why, and offers to sign in again', () => {
    const reply = errorReply(
      new AppError('login_state_missing', 'Please sign in again.', {
        action: { href: 'https://app.example.com/oauth2/start', label: 'Sign in again' },
      }),
      'rid',
    );
    const page = views.render(reply.page!.view, reply.page!.title, reply.page!.data, 'rid');
    expect(page).toContain('took longer than ten minutes');
    expect(page).toContain('href="https://app.example.com/oauth2/start">Sign in again</a>');
    expect(page).toContain('rid');
  });

  it('html`` escapes values and keeps SafeHtml as is', () => {
    expect(html`<p>${HOSTILE}</p>${html`<b>ok</b>`}`.html).toBe(
      '<p>&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;</p><b>ok</b>',
    );
  });
});

describe('the denial page', () => {
  const identity = {
    sub: 's',
    user: 'dev@example.com',
    email: 'dev@example.com',
    emailVerified: true,
    groups: ['engineering'],
    name: undefined,
    preferredUsername: undefined,
  };
  const original = {
    method: 'GET',
    proto: 'https',
    host: 'grafana.example.com',
    uri: '/admin',
    path: '/admin',
    query: '',
    url: 'https://grafana.example.com/admin',
    clientIp: '192.0.2.1',
  } as unknown as OriginalRequest;

  it("names groups and domains that would have allowed it, but no other user's name or email", () => {
    const reply = deniedReply(
      identity,
      original,
      {
        code: 'forbidden',
        reason: 'No rule allows GET /admin for you.',
        wouldAllow: {
          groups: ['admins'],
          users: ['alice@example.com', 'bob'],
          emails: ['alice@example.com', 'carol@example.com'],
          emailDomains: ['corp.example.com'],
        },
      },
      {},
    );
    const page = views.render(reply.page!.view, reply.page!.title, reply.page!.data, 'rid');
    const text = `${page}${JSON.stringify(reply.json)}`;
    for (const other of ['alice@example.com', 'bob', 'carol@example.com']) expect(text).not.toContain(other);
    expect(page).toContain('the group <code>admins</code>');
    expect(page).toContain('an email address at <code>corp.example.com</code>');
    expect(page).toContain('3 named users (not listed here)');
    expect(reply.json).toMatchObject({
      allowedBy: { groups: ['admins'], users: [], emails: [], namedUsers: 3 },
    });
  });
});
