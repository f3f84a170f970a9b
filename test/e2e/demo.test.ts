import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { tcpAccepts } from '../support/redis.ts';
import { hasChromium, launchChromium, screenshot, signInAtDex, watchProblems } from './support.ts';

/**
 * `npm run demo` as a user meets it: one command prints the URLs and demo users and starts
 * everything; in Chromium one logs in at the Dex stand-in's form, lands on the sample dashboard,
 * opens the second host without a new login; Ctrl-C stops everything.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;

describe.skipIf(!hasChromium())('npm run demo, in Chromium', () => {
  let demo: ChildProcess;
  let output = '';
  let browser: Browser;
  const ports = { gateway: 0, dex: 0, auth: 0 };

  beforeAll(async () => {
    [ports.gateway, ports.dex, ports.auth] = await Promise.all([freePort(), freePort(), freePort()]);
    demo = spawn(
      process.execPath,
      ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'scripts/demo.ts'],
      {
        cwd: root,
        env: {
          PATH: process.env['PATH'],
          DEMO_GATEWAY_PORT: String(ports.gateway),
          DEMO_DEX_PORT: String(ports.dex),
          DEMO_AUTH_PORT: String(ports.auth),
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    demo.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    demo.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const started = new Promise<void>((resolve, reject) => {
      const check = setInterval(() => {
        if (output.includes('Ctrl-C stops everything')) {
          clearInterval(check);
          resolve();
        }
      }, 50);
      demo.once('exit', (code) => {
        clearInterval(check);
        reject(new Error(`demo exited with ${code}:\n${output}`));
      });
    });
    [browser] = await Promise.all([launchChromium(), started]);
  });
  afterAll(async () => {
    await browser?.close();
    if (demo && demo.exitCode === null) demo.kill('SIGKILL');
  });

  it('prints the URLs to open and every demo user', () => {
    expect(output).toContain(`http://dashboard.demo.localhost:${ports.gateway}/`);
    expect(output).toContain(`http://grafana.demo.localhost:${ports.gateway}/`);
    expect(output).toContain(`http://dashboard.demo.localhost:${ports.gateway}/kubeconfig`);
    for (const user of DEMO_USERS) expect(output).toContain(user.login);
    expect(output).toContain('password');
  });

  it('logs in at the Dex form, shows the dashboard, and opens the second host without a new login', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      const problems = watchProblems(page);
      const dashboard = `http://dashboard.demo.localhost:${ports.gateway}/`;
      await page.goto(dashboard);
      expect(page.url()).toContain(`127.0.0.1:${ports.dex}/dex/interaction/`);
      await signInAtDex(page, admin);
      expect(page.url()).toBe(dashboard);
      expect(await page.locator('#user').textContent()).toBe(admin.email);
      const claims = JSON.parse((await page.locator('#claims').textContent()) ?? '{}') as Record<
        string,
        unknown
      >;
      expect(claims['email']).toBe(admin.email);
      expect(claims['groups']).toEqual(admin.groups);
      await screenshot(page, 'demo-dashboard');

      await page.getByRole('link', { name: 'Open grafana.demo.localhost' }).click();
      await page.waitForURL(`http://grafana.demo.localhost:${ports.gateway}/`);
      expect(await page.locator('#user').textContent()).toBe(admin.email);

      await page.getByRole('link', { name: 'Kubeconfig' }).click();
      await page.waitForURL(/\/kubeconfig$/);
      expect(await page.getByRole('heading', { name: 'Cluster demo' }).count()).toBe(1);
      await screenshot(page, 'demo-kubeconfig');

      await page.goBack();
      // A dashboard's sign-out link shows the confirmation; its button signs out.
      await page.getByRole('link', { name: 'Sign out' }).click();
      await page.getByRole('heading', { name: 'Sign out' }).waitFor();
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('heading', { name: 'Signed out' }).waitFor();
      await screenshot(page, 'demo-signed-out');
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('Ctrl-C stops everything', async () => {
    const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
    demo.kill('SIGINT');
    expect(await exited).toBe(0);
    for (const port of Object.values(ports)) expect(await tcpAccepts(port, 500)).toBe(false);
  });
});
