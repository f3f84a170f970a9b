import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS } from '../support/dex.ts';
import { hasNginx, type RunningProxy, startIngressNginx, startShippedProxy } from '../support/proxies.ts';
import { makeTempDir, removeDir } from '../support/redis.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { headerValues, startUpstream, type Upstream } from '../support/upstream.ts';

/**
 * The shipped nginx file judges the host nginx serves, never the client's Host header alone
 * (issue 11 review: `$http_host` in X-Original-URL let a client pick the host the policy judged,
 * both with an unknown Host on the default server and with an absolute-form request line).
 * Bearer ID tokens stand for sessions here, so that host-bound cookies play no part.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;

const POLICY = `default: deny
rules:
  - host: grafana.localhost
    allow: { groups: ["admins"] }
  - host: wiki.localhost
    allow: { groups: ["system:authenticated"] }
`;

/** One raw HTTP/1.1 exchange; '' when the server closes the connection without an answer. */
function exchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(err),
    );
    socket.write(text);
  });
}

/** The README's ingress-nginx ConfigMap snippets and auth-response-headers. */
function readmeIngressNginx(): { snippets: { http: string; server: string }; authResponseHeaders: string[] } {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = (key: string) => {
    const m = new RegExp(`\\n  ${key}: \\|\\n((?:    .*\\n)+)`).exec(readme);
    if (!m) throw new Error(`README: no ingress-nginx ${key}`);
    return m[1] as string;
  };
  const headers = /nginx\.ingress\.kubernetes\.io\/auth-response-headers: *([\w,-]+)/.exec(readme);
  if (!headers) throw new Error('README: no ingress-nginx auth-response-headers annotation');
  return {
    snippets: { http: block('http-snippet'), server: block('server-snippet') },
    authResponseHeaders: (headers[1] as string).split(','),
  };
}

const WIRINGS = [
  {
    name: 'the shipped nginx file',
    unknownHost: '' as const,
    start: (at: Parameters<typeof startShippedProxy>[1]) => startShippedProxy('nginx', at),
  },
  {
    name: "the README's ingress-nginx wiring",
    unknownHost: undefined,
    start: (at: Parameters<typeof startShippedProxy>[1]) =>
      startIngressNginx({ ...at, ...readmeIngressNginx() }),
  },
];

describe.skipIf(!hasNginx()).each(WIRINGS)('$name judges the host it serves', (wiring) => {
  let stack: Stack;
  let grafana: Upstream;
  let nginx: RunningProxy;
  let dir: string;
  let tokens: { admin: string; dev: string };

  beforeAll(async () => {
    dir = await makeTempDir('nginx-host');
    await writeFile(`${dir}/policy.yaml`, POLICY);
    stack = await startStack({
      redis: false,
      env: { AUTHZ_CONFIG: `${dir}/policy.yaml`, AUTH_PORT: '0', BEARER_AUDIENCES: 'kubernetes' },
    });
    grafana = await startUpstream();
    nginx = await wiring.start({
      pagesUrl: stack.service.url,
      decisionUrl: stack.service.decisionUrl,
      upstreamUrl: grafana.url,
      hosts: ['grafana.localhost'],
    });
    const mint = (u: typeof admin, sub: string) =>
      stack.dex.mintIdToken({
        sub,
        email: u.email,
        email_verified: true,
        groups: u.groups,
        aud: 'kubernetes',
      });
    tokens = { admin: await mint(admin, 'admin'), dev: await mint(dev, 'dev') };
  });
  afterAll(async () => {
    await nginx?.close();
    await grafana?.close();
    await stack?.close();
    if (dir) await removeDir(dir);
  });

  const ask = (target: string, host: string, token?: string) =>
    exchange(
      nginx.port,
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}` +
        'Accept: application/json\r\nConnection: close\r\n\r\n',
    );
  const reachedBy = (before: number) =>
    grafana.requests.slice(before).map((r) => headerValues(r, 'x-auth-request-user')[0]);

  it('lets an admin into Grafana under its own name, with the port kept in what it judges', async () => {
    const before = grafana.requests.length;
    const reply = await ask('/api/admin/users', `grafana.localhost:${nginx.port}`, tokens.admin);
    expect(reply).toMatch(/^HTTP\/1\.1 200/);
    expect(reachedBy(before)).toEqual([admin.email]);
    const anonymous = await ask('/dash', `grafana.localhost:${nginx.port}`);
    const origin = `http://grafana.localhost:${nginx.port}`;
    expect(anonymous).toContain(`Location: ${origin}/oauth2/start?rd=${origin}/dash`);
  });

  it.skipIf(wiring.unknownHost === undefined)(
    'closes the connection for a Host it has no server for, instead of judging that host',
    async () => {
      const before = grafana.requests.length;
      const reply = await ask('/api/admin/users', `wiki.localhost:${nginx.port}`, tokens.dev);
      expect(reply).toBe('');
      expect(reachedBy(before)).toEqual([]);
    },
  );

  it('judges the host of an absolute-form request line, not a different Host header', async () => {
    const before = grafana.requests.length;
    const reply = await ask(
      `http://grafana.localhost:${nginx.port}/api/admin/users`,
      `wiki.localhost:${nginx.port}`,
      tokens.dev,
    );
    expect(reply).toMatch(/^HTTP\/1\.1 (403|421)/);
    expect(reachedBy(before)).toEqual([]);
  });
});
