import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { hasRedisServer, tcpAccepts } from '../support/redis.ts';
import { hasChromium, launchChromium, screenshot, signInAtDex, watchProblems } from './support.ts';

/**
 * `npm run demo` as a user meets it: one command (package.json's own, through the Node launcher)
 * prints a readable banner with the URLs, the demo users, the store and a doctor command, and starts
 * everything; in Chromium one logs in at the styled Dex stand-in's form, lands on the sample
 * dashboard, opens the second host without a new login, sees the service's root page, and a direct
 * visit to /auth explains itself; with Redis two replicas answer; Ctrl-C stops everything.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const demoScript = (JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: { demo: string } })
  .scripts.demo;

/** What page.evaluate may use in the browser (this project compiles without DOM types). */
type Styles = { getComputedStyle(element: unknown): { backgroundColor: string } };

interface Demo {
  readonly child: ChildProcess;
  readonly ports: { gateway: number; dex: number; auth: number; auth2: number };
  output(): string;
  /** Sends SIGINT (Ctrl-C) and resolves with the exit code. */
  interrupt(): Promise<number | null>;
}

/** Starts `npm run demo`'s command on free ports; resolves once the banner is out. */
async function startDemo(extraEnv: Record<string, string> = {}): Promise<Demo> {
  const [gateway, dex, auth, auth2] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const [node, ...args] = demoScript.split(' ');
  expect(node).toBe('node');
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: {
      PATH: process.env['PATH'],
      HOME: process.env['HOME'],
      DEMO_GATEWAY_PORT: String(gateway),
      DEMO_DEX_PORT: String(dex),
      DEMO_AUTH_PORT: String(auth),
      DEMO_AUTH_PORT2: String(auth2),
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  await new Promise<void>((resolve, reject) => {
    const check = setInterval(() => {
      if (output.includes('Ctrl-C stops everything')) {
        clearInterval(check);
        resolve();
      }
    }, 50);
    child.once('exit', (code) => {
      clearInterval(check);
      reject(new Error(`demo exited with ${code}:\n${output}`));
    });
  });
  return {
    child,
    ports: { gateway, dex, auth, auth2 },
    output: () => output,
    interrupt() {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGINT');
      return exited;
    },
  };
}

/** The doctor command the banner prints (the lines after "Check the demo's settings"). */
function doctorCommandOf(output: string): string {
  const lines = output.split('\n');
  const start = lines.findIndex((l) => l.startsWith("Check the demo's settings with doctor"));
  const end = lines.findIndex((l, i) => i > start && l.includes('npm run doctor'));
  return lines.slice(start + 1, end + 1).join('\n');
}

function runShell(command: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd: root, env: process.env });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.on('exit', (code) => resolve({ code, output }));
  });
}

async function decisions(port: number, outcome: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`dex_forward_auth_decisions_total{outcome="${outcome}"}`));
  return Number(line?.split(' ').at(-1) ?? 0);
}

describe.skipIf(!hasChromium() || !hasRedisServer())('npm run demo with Redis, in Chromium', () => {
  let demo: Demo;
  let browser: Browser;

  beforeAll(async () => {
    [demo, browser] = await Promise.all([startDemo({ LOG_LEVEL: 'info' }), launchChromium()]);
  });
  afterAll(async () => {
    await browser?.close();
    if (demo && demo.child.exitCode === null) demo.child.kill('SIGKILL');
  });

  it('prints a readable banner first: the URLs to open, every demo user, Redis and both replicas', () => {
    const { gateway, auth, auth2 } = demo.ports;
    const output = demo.output();
    const before = output.slice(0, output.indexOf('dex-forward-auth demo is running'));
    expect(before).not.toMatch(/^\{/m); // no JSON log line (nor warning) ahead of the banner
    expect(output).toContain(`http://dashboard.demo.localhost:${gateway}/`);
    expect(output).toContain(`http://grafana.demo.localhost:${gateway}/`);
    expect(output).toContain(`http://dashboard.demo.localhost:${gateway}/kubeconfig`);
    expect(output).toContain(`http://auth.demo.localhost:${gateway}/`);
    for (const user of DEMO_USERS) expect(output).toContain(user.login);
    expect(output).toContain('(password: password)');
    expect(output).toMatch(
      /Sessions: in Redis \(redis:\/\/127\.0\.0\.1:\d+, started for the demo\), shared by 2 replicas\./,
    );
    expect(output).toContain(`http://127.0.0.1:${auth}, http://127.0.0.1:${auth2}`);
    expect(output).not.toMatch(/^\{/m); // log lines after the banner are readable too
  });

  it('the printed doctor command, pasted into a shell, finds no problem with the demo', async () => {
    const command = doctorCommandOf(demo.output());
    expect(command).toContain(`--host dashboard.demo.localhost:${demo.ports.gateway}`);
    const { code, output } = await runShell(command);
    expect(output).toContain('no problems found');
    expect(code).toBe(0);
  });

  it('the Dex stand-in shows a styled login page listing the demo users and their password', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      await page.goto(`http://dashboard.demo.localhost:${demo.ports.gateway}/`);
      expect(page.url()).toContain(`127.0.0.1:${demo.ports.dex}/dex/interaction/`);
      await page.getByRole('heading', { name: 'Log in to Your Account' }).waitFor();
      const users = page.getByRole('region', { name: 'Demo users' });
      for (const user of DEMO_USERS)
        expect(await users.getByRole('button', { name: user.login }).count()).toBe(1);
      expect(await users.textContent()).toContain('The password is password for all of them');
      const login = page.getByRole('button', { name: 'Login' });
      // Styled: the primary button is Dex's blue, not the browser's grey default.
      expect(
        await login.evaluate((b) => (globalThis as unknown as Styles).getComputedStyle(b).backgroundColor),
      ).toBe('rgb(63, 127, 230)');
      await screenshot(page, 'demo-dex-login');
      // Clicking a demo user fills in the form.
      await users.getByRole('button', { name: 'dev@example.com' }).click();
      expect(await page.getByLabel('Email Address').inputValue()).toBe('dev@example.com');
      expect(await page.getByLabel('Password').inputValue()).toBe('password');
    } finally {
      await context.close();
    }
  });

  it('logs in, shows the dashboard, opens the second host without a new login, and both replicas answered from one Redis', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      const problems = watchProblems(page);
      const dashboard = `http://dashboard.demo.localhost:${demo.ports.gateway}/`;
      await page.goto(dashboard);
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
      await page.waitForURL(`http://grafana.demo.localhost:${demo.ports.gateway}/`);
      expect(await page.locator('#user').textContent()).toBe(admin.email);
      await page.reload();
      expect(await page.locator('#user').textContent()).toBe(admin.email);

      // Round-robin: each replica allowed requests of a session one of them created.
      expect(await decisions(demo.ports.auth, 'allow')).toBeGreaterThan(0);
      expect(await decisions(demo.ports.auth2, 'allow')).toBeGreaterThan(0);

      await page.getByRole('link', { name: 'Sign-in state' }).click();
      await page.waitForURL(`http://auth.demo.localhost:${demo.ports.gateway}/`);
      expect(await page.locator('#sign-in-state').textContent()).toContain(`signed in as ${admin.email}`);
      await screenshot(page, 'demo-root-signed-in');
      await page.goBack();

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

      // What the terminal showed meanwhile: one readable line per event, never JSON.
      const logs = demo.output().split('Ctrl-C stops everything.\n')[1] ?? '';
      expect(logs).toContain('INFO: login completed');
      for (const line of logs.split('\n').filter(Boolean)) {
        expect(line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] [A-Z]+: /);
      }
    } finally {
      await context.close();
    }
  });

  it('the service root says what it is and that a new browser is not signed in', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const response = await page.goto(`http://auth.demo.localhost:${demo.ports.gateway}/`);
      expect(response?.status()).toBe(200);
      expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Single sign-on gate');
      expect(await page.locator('.lead').textContent()).toContain('dex-forward-auth');
      expect(await page.locator('#sign-in-state').textContent()).toContain('You are not signed in here');
    } finally {
      await context.close();
    }
  });

  it('a browser tab opened on /auth or /oauth2/auth explains where to go instead of starting a sign-in', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      for (const path of ['/auth', '/oauth2/auth']) {
        const response = await page.goto(`http://127.0.0.1:${demo.ports.auth}${path}`);
        expect(page.url()).toBe(`http://127.0.0.1:${demo.ports.auth}${path}`); // no trip to Dex
        expect(response?.status()).toBe(400);
        await page.getByRole('heading', { name: 'This address is for the proxy' }).waitFor();
        expect(await page.getByRole('link', { name: 'About this service' }).getAttribute('href')).toBe('/');
      }
      await screenshot(page, 'demo-proxy-only');
    } finally {
      await context.close();
    }
  });

  it('Ctrl-C stops everything, Redis included', async () => {
    const redisPort = Number(/redis:\/\/127\.0\.0\.1:(\d+)/.exec(demo.output())?.[1]);
    expect(await tcpAccepts(redisPort, 500)).toBe(true);
    expect(await demo.interrupt()).toBe(0);
    for (const port of [...Object.values(demo.ports), redisPort])
      expect(await tcpAccepts(port, 500)).toBe(false);
  });
});

describe('npm run demo without Redis', () => {
  it('says in one line that sessions stay in memory, and runs one replica', async () => {
    const demo = await startDemo({ DEMO_REDIS: 'off', LOG_LEVEL: 'warn' });
    try {
      expect(demo.output()).toContain('Sessions: in memory (DEMO_REDIS=off), so one replica.');
      expect(demo.output()).not.toMatch(/^\{/m);
      expect(await tcpAccepts(demo.ports.auth, 500)).toBe(true);
      expect(await tcpAccepts(demo.ports.auth2, 500)).toBe(false);
      expect(doctorCommandOf(demo.output())).not.toContain('REDIS_URL');
    } finally {
      expect(await demo.interrupt()).toBe(0);
    }
  });
});
