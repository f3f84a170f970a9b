import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { helmetHeaders } from '../../src/http/security.ts';
import { html, VIEW_NAMES, type ViewName, Views, type ViewValue } from '../../src/http/views.ts';
import { hasChromium, launchChromium, screenshot, watchProblems } from './support.ts';

/**
 * Every page the service can show, rendered with hostile values and served with the real page
 * headers (helmet + our CSP), looked at in Chromium: light and dark, desktop and phone. Escaping,
 * the CSP hashes of the inline stylesheet and script, accessible names and text contrast are checked
 * by the browser itself; the screenshots go to test-artifacts/e2e/pages/.
 */

const HOSTILE = `<img src=x onerror="window.__pwned=1">"'&`;

const SAMPLE: Record<ViewName, { title: string; data: Record<string, ViewValue> }> = {
  error: {
    title: 'Sign-in could not be completed',
    data: {
      message: `This sign-in could not be verified. ${HOSTILE}`,
      hint: 'Starting again from the page you wanted usually fixes it.',
      status: 400,
      code: 'login_state_invalid',
      action: html`<p class="actions"><a class="button" href="/oauth2/start">Sign in again</a></p>`,
    },
  },
  denied: {
    title: 'Access denied',
    data: {
      user: `mallory${HOSTILE}@example.com`,
      target: `https://grafana.example.com/admin?q=${HOSTILE}`,
      groups: html`<ul class="groups"><li>engineering</li><li>${HOSTILE}</li></ul>`,
      reason: 'No rule or RBAC binding allows GET /admin for you or your groups.',
      signOutUrl: '/oauth2/sign_out',
    },
  },
  'signed-out': {
    title: 'Signed out',
    data: {
      signInUrl: '/oauth2/start',
      provider: 'Dex',
      providerNote:
        'Your sign-in at the identity provider (Dex) was not ended: released Dex offers no way to end it.',
    },
  },
  'sign-out': {
    title: 'Sign out',
    data: {
      site: `grafana.example.com${HOSTILE}`,
      who: html`<p>You are signed in as <code>mallory${HOSTILE}@example.com</code>.</p>`,
      scope: 'This ends your session on this site.',
      action: `/oauth2/sign_out?rd=${encodeURIComponent(`https://grafana.example.com/${HOSTILE}`)}`,
      cancelUrl: 'https://grafana.example.com/',
    },
  },
  'provider-unavailable': {
    title: 'Identity provider unavailable',
    data: {
      message: 'The identity provider cannot be reached right now. Please try again shortly.',
      providerPhrase: 'the identity provider (Dex)',
      status: 503,
      code: 'provider_unavailable',
    },
  },
  'rate-limited': {
    title: 'Too many sign-in attempts',
    data: {
      message: `Too many sign-in attempts from your address. ${HOSTILE}`,
      status: 429,
      code: 'rate_limited',
      retryAfter: '6',
    },
  },
  'redirect-loop': {
    title: 'Sign-in keeps looping',
    data: {
      message: `Signing in to this page keeps coming back here. ${HOSTILE}`,
      status: 508,
      code: 'redirect_loop',
    },
  },
  kubeconfig: {
    title: 'Kubeconfig',
    data: {
      user: `alice${HOSTILE}`,
      groupCount: '2',
      groups: `engineering, ${HOSTILE}`,
      issuer: 'https://dex.example.com/dex',
      expires: 'Mon, 23 Nov 2026 10:00:00 GMT',
      expiresIso: '2026-11-23T10:00:00.000Z',
      expiresIn: 'in 10 minutes',
      clusters: html`<section class="cluster"><h2>Cluster <code>prod</code></h2><div class="variants"><div>
<p class="actions"><a class="button" href="/kubeconfig/download?cluster=prod&amp;variant=exec">Download kubeconfig-prod.yaml</a>
<button type="button" class="button secondary" data-copy="exec-0" aria-label="Copy the kubelogin kubeconfig for prod" hidden>Copy</button></p>
<pre tabindex="0" aria-label="kubeconfig"><code id="exec-0">apiVersion: v1
kind: Config
# ${HOSTILE}</code></pre></div></div></section>`,
      all: undefined,
      file: 'kubeconfig-prod.yaml',
      signOutUrl: '/oauth2/sign_out',
    },
  },
  home: {
    title: 'Single sign-on gate',
    data: {
      state: html`<p id="sign-in-state">You are signed in as <strong>alice${HOSTILE}</strong>, until <time datetime="2026-11-23T10:00:00.000Z">Mon, 23 Nov 2026 10:00:00 GMT</time>.</p>
<h2>Your groups (2)</h2><ul class="groups"><li>engineering</li><li>${HOSTILE}</li></ul>
<h2>Links</h2><ul><li><a href="/oauth2/userinfo">Who am I</a>: your identity as JSON (never a token)</li><li><a href="/oauth2/sign_out">Sign out</a>: end this session</li></ul>`,
      version: '0.1.0',
    },
  },
  sessions: {
    title: 'Your sessions',
    data: {
      user: `alice${HOSTILE}`,
      scope: 'Each session is one browser signed in to one site.',
      rows: html`<section class="session" aria-current="true"><h2>This browser</h2><dl>
<dt>Signed in</dt><dd>2026-11-23 09:00:00 UTC</dd><dt>Last seen</dt><dd>2026-11-23 09:30:00 UTC</dd>
<dt>Browser</dt><dd>Mozilla/5.0 ${HOSTILE}</dd><dt>Address</dt><dd><code>203.0.113.7</code></dd>
<dt>Site</dt><dd><code>grafana.example.com</code></dd></dl>
<form method="post" action="/oauth2/sessions?end=abc"><button class="button secondary" type="submit">Sign out this browser</button></form></section>`,
      everywhereAction: '/oauth2/sessions?end=all',
      backUrl: 'https://grafana.example.com/',
    },
  },
  'proxy-only': {
    title: 'This address is for the proxy',
    data: {
      endpoint: '/auth',
      purpose: `Traefik's ForwardAuth middleware asks it about every request. ${HOSTILE}`,
      setup: 'Point the ForwardAuth middleware at it.',
      status: 400,
      code: 'not_a_forward_auth_request',
    },
  },
};

/**
 * Runs in the page (plain JavaScript: this project compiles without DOM types): every visible text
 * element's contrast against its effective background (WCAG AA: 4.5), controls without a name.
 */
const AUDIT = `(() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) ?? []).map(Number);
  const channel = (v) => { const s = v / 255; return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r = 0, g = 0, b = 0]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const lowContrast = [];
  for (const el of document.querySelectorAll('main *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.offsetParent === null) continue;
    const fg = luminance(rgb(getComputedStyle(el).color));
    const bg = luminance(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < 4.5) lowContrast.push(el.tagName + '.' + el.className + ': ' + ratio.toFixed(2));
  }
  const nameless = [...document.querySelectorAll('a, button')]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim()))
    .map((el) => el.outerHTML);
  return { lowContrast, nameless, h1: document.querySelectorAll('h1').length, lang: document.documentElement.lang };
})()`;

interface Audit {
  lowContrast: string[];
  nameless: string[];
  h1: number;
  lang: string;
}

const audit = (page: Page): Promise<Audit> => page.evaluate<Audit>(AUDIT);

describe.skipIf(!hasChromium())('every page, in Chromium', () => {
  let browser: Browser;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    const views = new Views();
    const headers = helmetHeaders(views.contentSecurityPolicy);
    server = createServer((req, res) => {
      const name = (req.url ?? '/').slice(1) as ViewName;
      const sample = SAMPLE[name];
      if (!sample) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html; charset=utf-8' });
      res.end(views.render(name, sample.title, sample.data, 'req-1234'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  for (const scheme of ['light', 'dark'] as const) {
    it.each([...VIEW_NAMES])(
      `%s renders escaped, under the CSP, readable and named (${scheme})`,
      async (name) => {
        const context = await browser.newContext({
          colorScheme: scheme,
          viewport: { width: 1100, height: 800 },
        });
        try {
          const page = await context.newPage();
          const problems = watchProblems(page);
          await page.goto(`${base}/${name}`);
          expect(problems).toEqual([]);
          expect(await page.evaluate<unknown>('window.__pwned')).toBeUndefined();
          expect(await page.locator('main img').count()).toBe(0);
          const result = await audit(page);
          expect(result.lang).toBe('en');
          expect(result.h1).toBe(1);
          expect(result.nameless).toEqual([]);
          expect(result.lowContrast).toEqual([]);
          await screenshot(page, `pages/${name}-${scheme}`);
          await page.setViewportSize({ width: 375, height: 740 });
          expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(
            375,
          );
          await screenshot(page, `pages/${name}-${scheme}-phone`);
        } finally {
          await context.close();
        }
      },
    );
  }

  it('the copy script runs under the CSP: copy buttons appear only where there is something to copy', async () => {
    const page = await browser.newPage();
    try {
      const problems = watchProblems(page);
      await page.goto(`${base}/kubeconfig`);
      expect(
        await page.getByRole('button', { name: 'Copy the kubelogin kubeconfig for prod' }).isVisible(),
      ).toBe(true);
      await page.goto(`${base}/error`);
      expect(await page.getByRole('button').count()).toBe(0);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
