import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { type RedisServer, waitUntil } from '../support/redis.ts';
import type { ServiceProcess } from '../support/serviceProcess.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { hasOpenssl, makeTestPki } from '../support/tls.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * The admin API (issue 16 items 2-3) on replica A of three real replica processes sharing one real
 * Redis: a session ended there is refused by replicas B and C within the hot-cache second, and it
 * does not come back from its cookie after redis-server is killed and restarted empty.
 */

const TOKEN = 'admin-token-for-the-flow-tests-0123456789';
const WRONG = 'wrong-token-that-must-never-be-logged-98765';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const [alice, bob] = DEMO_USERS.filter((u) => u.emailVerified);
const XHR = { accept: 'application/json' };

let stack: Stack;
let replicas: readonly ServiceProcess[];
let adminUrl: string;
let host: string;
let tokenFile: string;
let wrongFile: string;

/** `dex-forward-auth sessions …` as a real process: its exit status and what it printed. */
const cli = (...args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [
        '--experimental-strip-types',
        '--disable-warning=ExperimentalWarning',
        'src/cli.ts',
        'sessions',
        ...args,
      ],
      { env: { PATH: process.env['PATH'] } },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
    );
  });

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dfa-admin-'));
  tokenFile = join(dir, 'token');
  wrongFile = join(dir, 'wrong');
  await writeFile(tokenFile, `${TOKEN}\n`);
  await writeFile(wrongFile, WRONG);
  const adminPort = await freePort();
  adminUrl = `http://127.0.0.1:${adminPort}`;
  stack = await startStack({
    replicas: {
      count: 3,
      processes: true,
      inProcess: false,
      envOf: (i): Record<string, string> =>
        i === 0 ? { ADMIN_PORT: String(adminPort), ADMIN_TOKEN_FILE: tokenFile } : {},
    },
    gateway: { routes: (pages) => [{ pathPrefix: '/oauth2/sessions', service: pages }] },
  });
  replicas = stack.replicas;
  host = new URL(stack.appUrl).host;
  await waitUntil(
    'the admin API to listen',
    async () => (await fetch(`${adminUrl}/admin/sessions`)).status === 401,
  );
}, 60_000);
afterAll(async () => {
  await stack?.close();
});

const admin = (method: string, path: string, token = TOKEN) =>
  fetch(`${adminUrl}${path}`, { method, headers: { authorization: `Bearer ${token}` } });

interface LoggedIn {
  readonly browser: Browser;
  readonly sub: string;
  readonly cookie: () => string;
}

async function login(user: typeof alice, path: string): Promise<LoggedIn> {
  const browser = new Browser({ navigation: true });
  const { final } = await loginThroughDex(browser, `${stack.appUrl}${path}`, user!);
  expect(final.status).toBe(200);
  const seen = stack.upstream.requests.findLast((r) => r.url === path)!;
  const sub = decodeJwt(headerValues(seen, 'authorization')[0]!.slice('Bearer '.length)).sub as string;
  const cookie = () => browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
  return { browser, sub, cookie };
}

/** Asks one replica's decision endpoint directly, as the proxy would. */
const decide = (replica: ServiceProcess, cookie: string, path: string) =>
  fetch(`${replica.url}/auth`, {
    headers: {
      'x-forwarded-method': 'GET',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': host,
      'x-forwarded-uri': path,
      cookie: `_forward_auth=${cookie}`,
      ...XHR,
    },
  }).then((r) => r.status);

/** This browser's session id, from its own sessions page (JSON). */
async function ownSessionId(s: LoggedIn): Promise<string> {
  const reply = await s.browser.get(`${stack.appUrl}/oauth2/sessions?format=json`, XHR);
  expect(reply.status).toBe(200);
  const body = JSON.parse(reply.body) as { sessions: { id: string; current: boolean }[] };
  return body.sessions.find((x) => x.current)!.id;
}

/** The local addresses (hex, as the kernel writes them) of the sockets listening on `port`. */
function listeningAddresses(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const [address, localPort] = (cols[1] ?? '').split(':');
      if (localPort === hexPort && cols[3] === '0A' && address) out.push(address);
    }
  }
  return out;
}
const LOOPBACK = new Set(['0100007F', '00000000000000000000000001000000']);

describe('the admin API', () => {
  it('answers a missing or wrong token with a bare 401 and never logs the token', async () => {
    const none = await fetch(`${adminUrl}/admin/users/x/sessions`);
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ error: 'unauthorized' });
    const wrong = await admin('GET', '/admin/users/x/sessions', WRONG);
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ error: 'unauthorized' });
    expect(wrong.headers.get('cache-control')).toBe('no-store');
    expect((await admin('DELETE', '/admin/sessions', TOKEN.slice(0, -1))).status).toBe(401);
    await sleep(100);
    expect(replicas[0]!.output()).not.toContain(WRONG);
    expect(replicas[0]!.output()).not.toContain(TOKEN);
  });

  it('refuses even the token in the file once the file was rotated to one shorter than 32 characters, and says so without the token', async () => {
    expect((await admin('GET', '/admin/users/nobody/sessions')).status).toBe(200);
    await writeFile(tokenFile, 'short-placeholder\n');
    try {
      expect((await admin('GET', '/admin/users/nobody/sessions', 'short-placeholder')).status).toBe(401);
      expect((await admin('GET', '/admin/users/nobody/sessions', 'short-placeholder')).status).toBe(401);
      await sleep(100);
      const warnings = replicas[0]!.output().split('too short to be accepted').length - 1;
      expect(warnings).toBe(1);
      expect(replicas[0]!.output()).not.toContain('short-placeholder');
    } finally {
      await writeFile(tokenFile, `${TOKEN}\n`);
    }
    expect((await admin('GET', '/admin/users/nobody/sessions')).status).toBe(200);
  });

  it('listens on loopback only by default (kubectl exec and port-forward reach it there), not on every address', () => {
    const addresses = listeningAddresses(Number(new URL(adminUrl).port));
    expect(addresses.length).toBeGreaterThan(0);
    expect(addresses.filter((a) => !LOOPBACK.has(a))).toEqual([]);
  });

  it('is on no listener but ADMIN_PORT: the pages and decision ports do not know it', async () => {
    for (const r of replicas) {
      const reply = await fetch(`${r.url}/admin/sessions`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      expect(reply.status).toBe(404);
    }
  });

  it('ends one session on replica A: replicas B and C refuse it within the hot-cache second, the user’s other session stays, and Redis restarted empty does not bring it back', async () => {
    const leaving = await login(alice, '/admin/one/leaving');
    const staying = await login(alice, '/admin/one/staying');
    const id = await ownSessionId(leaving);
    const listed = (await (
      await admin('GET', `/admin/users/${encodeURIComponent(leaving.sub)}/sessions`)
    ).json()) as {
      sessions: { id: string; host: string }[];
    };
    expect(listed.sessions.map((s) => s.id)).toContain(id);
    expect(listed.sessions).toHaveLength(2);
    const kept = leaving.cookie();
    const [, b, c] = replicas as [ServiceProcess, ServiceProcess, ServiceProcess];
    // B and C have the session hot in memory.
    for (const r of [b, c]) expect(await decide(r, kept, '/warm')).toBe(200);

    const ended = await admin(
      'DELETE',
      `/admin/users/${encodeURIComponent(leaving.sub)}/sessions/${encodeURIComponent(id)}`,
    );
    expect(ended.status).toBe(200);
    expect(await ended.json()).toEqual({ ended: 1 });
    for (const r of [b, c]) {
      await waitUntil(
        'the replica to refuse the ended session',
        async () => (await decide(r, kept, '/after')) === 401,
        {
          timeoutMs: 3_000,
        },
      );
    }
    expect(await decide(b, staying.cookie(), '/staying')).toBe(200);

    const redis = stack.redis as RedisServer;
    await redis.kill('SIGKILL');
    await redis.start();
    for (const r of replicas) expect(await decide(r, kept, '/redis-empty')).toBe(401);
    for (const r of replicas) expect(await decide(r, staying.cookie(), '/redis-empty-staying')).toBe(200);
    // Once replica A's client is connected again (503 until then), the ended session is unknown.
    const again = `/admin/users/${encodeURIComponent(leaving.sub)}/sessions/${encodeURIComponent(id)}`;
    let status = 503;
    await waitUntil('replica A to reach Redis again', async () => {
      status = (await admin('DELETE', again)).status;
      return status !== 503;
    });
    expect(status).toBe(404);
  });

  it('ends all of a user’s sessions, then every session, each reaching every replica', async () => {
    const one = await login(alice, '/admin/all/one');
    const two = await login(alice, '/admin/all/two');
    const other = await login(bob, '/admin/all/other');
    const gone = await admin('DELETE', `/admin/users/${encodeURIComponent(one.sub)}/sessions`);
    expect(((await gone.json()) as { ended: number }).ended).toBeGreaterThanOrEqual(2);
    for (const r of replicas) {
      await waitUntil(
        'every replica to refuse them',
        async () =>
          (await decide(r, one.cookie(), '/x')) === 401 && (await decide(r, two.cookie(), '/x')) === 401,
        { timeoutMs: 3_000 },
      );
      expect(await decide(r, other.cookie(), '/bystander')).toBe(200);
    }
    const listed = await admin('GET', `/admin/users/${encodeURIComponent(one.sub)}/sessions`);
    expect(((await listed.json()) as { sessions: unknown[] }).sessions).toEqual([]);
    const everyone = await admin('DELETE', '/admin/sessions');
    expect(((await everyone.json()) as { ended: number }).ended).toBeGreaterThanOrEqual(1);
    for (const r of replicas) {
      await waitUntil(
        'every replica to refuse everyone',
        async () => (await decide(r, other.cookie(), '/y')) === 401,
        {
          timeoutMs: 3_000,
        },
      );
    }
  });

  it('answers a session of another user, an unknown path and a wrong method clearly', async () => {
    const mine = await login(alice, '/admin/bad/mine');
    const theirs = await login(bob, '/admin/bad/theirs');
    const theirId = await ownSessionId(theirs);
    const cross = await admin(
      'DELETE',
      `/admin/users/${encodeURIComponent(mine.sub)}/sessions/${encodeURIComponent(theirId)}`,
    );
    expect(cross.status).toBe(404);
    expect(await decide(replicas[1]!, theirs.cookie(), '/still')).toBe(200);
    expect((await admin('GET', '/admin/nothing')).status).toBe(404);
    expect((await admin('POST', '/admin/sessions')).status).toBe(405);
    expect((await admin('GET', '/admin/users/%E0%A4%A/sessions')).status).toBe(400);
  });

  it('the sessions command lists and ends sessions through it, with clear exit codes', async () => {
    const s = await login(alice, '/admin/cli/one');
    const id = await ownSessionId(s);
    const flags = ['--url', adminUrl, '--token-file', tokenFile];
    const listed = await cli('list', s.sub, ...flags);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain('127.0.0.1');
    const refused = await cli('list', s.sub, '--url', adminUrl, '--token-file', wrongFile);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refused the token');
    expect(refused.stderr + refused.stdout).not.toContain(WRONG);
    expect((await cli('end', s.sub, 'no-such-session', ...flags)).code).toBe(1);
    const ended = await cli('end', s.sub, id, ...flags);
    expect([ended.code, ended.stdout]).toEqual([0, '1 session(s) ended\n']);
    await waitUntil(
      'the ended session to be refused',
      async () => (await decide(replicas[2]!, s.cookie(), '/cli')) === 401,
    );
    expect((await cli('end-user', s.sub, ...flags, '--json')).stdout).toMatch(/^\{"ended":\d+\}\n$/);
    expect((await cli('end-all', ...flags)).code).toBe(0);
    const usage = await cli('end', s.sub, ...flags);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('end takes 2 argument(s)');
    expect((await cli('list', s.sub)).code).toBe(2); // no --url, no ADMIN_PORT
  });
});

describe.skipIf(!hasOpenssl())('the admin API with mutual TLS', () => {
  it('needs no token with a client CA: a client without a certificate of that CA gets no answer, one with it does', async () => {
    const pki = makeTestPki(await mkdtemp(join(tmpdir(), 'dfa-admin-tls-')));
    const service = await stack.startService({
      ADMIN_PORT: '0',
      ADMIN_TLS_CERT_FILE: pki.serverCert,
      ADMIN_TLS_KEY_FILE: pki.serverKey,
      ADMIN_TLS_CLIENT_CA_FILE: pki.caCert,
    });
    const url = service.adminUrl!;
    expect(url).toMatch(/^https:/);
    const tls = ['--ca-file', pki.caCert];
    const withCert = await cli(
      'list',
      'someone',
      '--url',
      url,
      ...tls,
      '--cert-file',
      pki.clientCert,
      '--key-file',
      pki.clientKey,
    );
    expect([withCert.code, withCert.stdout]).toEqual([0, 'no sessions\n']);
    const rogue = await cli(
      'list',
      'someone',
      '--url',
      url,
      ...tls,
      '--cert-file',
      pki.rogueCert,
      '--key-file',
      pki.rogueKey,
    );
    expect(rogue.code).toBe(1);
    const none = await cli('end-all', '--url', url, ...tls);
    expect(none.code).toBe(1);
    expect(none.stdout).toBe('');
  });
});
