import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PolicyAuthorizer, PolicyLoadError } from '../../src/authz/authorizer.ts';
import { loadPolicy } from '../../src/authz/policyFile.ts';
import { createAuthorizer } from '../../src/authz/setup.ts';
import { ConfigError } from '../../src/config.ts';
import { AppError } from '../../src/errors.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger } from '../../src/log.ts';
import { LogCapture } from '../support/service.ts';

/** AUTHZ_CONFIG files: validation that reports every problem, RBAC files and globs, hot reload. */

const NAMING = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: 'oidc:' };
const alice = identityFromClaims(
  { sub: 'a', email: 'alice@example.com', email_verified: true, groups: ['admins'] },
  NAMING,
);
const dev = identityFromClaims(
  { sub: 'd', email: 'dev@example.com', email_verified: true, groups: ['engineering'] },
  NAMING,
);
const get = (path: string, host = 'grafana.example.com') => ({ method: 'GET', proto: 'https', host, path });

const RBAC = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: grafana-view }
rules:
  - verbs: [get]
    nonResourceURLs: ["/grafana/*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: grafana-view-engineering }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: grafana-view }
subjects:
  - { apiGroup: rbac.authorization.k8s.io, kind: Group, name: "oidc:engineering" }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: unrelated }
`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'authz-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('reading AUTHZ_CONFIG', () => {
  it('reads rules, default and RBAC files given by glob, relative to the config file', () => {
    mkdirSync(join(dir, 'rbac'));
    write('rbac/grafana.yaml', RBAC);
    write('rbac/notes.txt', 'not yaml: [');
    const path = write(
      'authz.yaml',
      `
default: deny
rules:
  - host: grafana.example.com
    path: /admin
    allow: { groups: ["oidc:admins"] }
rbac:
  files: ["rbac/*.yaml"]
`,
    );
    const load = loadPolicy(path);
    expect(load.problems).toEqual([]);
    expect(load.spec).toMatchObject({
      defaultAllow: false,
      rbacEnabled: true,
      kubernetes: false,
      rules: [{ index: 1, host: 'grafana.example.com', path: '/admin', allow: { groups: ['oidc:admins'] } }],
    });
    expect(load.spec?.fileObjects.roles.map((r) => r.name)).toEqual(['grafana-view']);
    expect(load.spec?.fileObjects.bindings.map((b) => b.name)).toEqual(['grafana-view-engineering']);
  });

  it('defaults to deny with RBAC and to allow without', () => {
    expect(loadPolicy(write('a.yaml', 'rules: []\n')).spec?.defaultAllow).toBe(true);
    expect(loadPolicy(write('b.yaml', 'rbac: { files: [] }\n')).spec?.defaultAllow).toBe(false);
    expect(loadPolicy(write('c.yaml', '')).spec?.defaultAllow).toBe(true);
  });

  it('reports every problem at once: typos, bad values, broken RBAC files, missing files', () => {
    write('broken-rbac.yaml', 'kind: ClusterRole\nmetadata: { name: x }\nrules: [{ verbs: get }]\n');
    const path = write(
      'authz.yaml',
      `
default: maybe
rules:
  - host: "bad host!"
    path: admin
    allow: { group: ["oidc:admins"] }
rbac:
  files: ["broken-rbac.yaml", "missing.yaml"]
  kubernetes: "yes"
`,
    );
    const load = loadPolicy(path);
    expect(load.spec).toBeUndefined();
    const text = load.problems.join('\n');
    expect(text).toContain('default');
    expect(text).toContain('rules[0].host');
    expect(text).toContain('rules[0].path');
    expect(text).toMatch(/rules\[0\]\.allow.*group/);
    expect(text).toContain('rbac.kubernetes');
    expect(text).toContain('broken-rbac.yaml');
    expect(text).toMatch(/missing\.yaml: cannot be read \(ENOENT\)/);
  });

  it('reports YAML syntax errors with the file name', () => {
    const load = loadPolicy(write('authz.yaml', 'rules: [\n'));
    expect(load.spec).toBeUndefined();
    expect(load.problems[0]).toContain('authz.yaml');
  });

  it('a glob that matches nothing is a warning, not an error', () => {
    const load = loadPolicy(write('authz.yaml', 'rbac: { files: ["none/*.yaml"] }\n'));
    expect(load.problems).toEqual([]);
    expect(load.warnings.join()).toContain('matches no file');
  });

  it('a broken policy at start-up stops start-up with the list of problems', () => {
    const log = createLogger({ level: 'silent', destination: new LogCapture() });
    const path = write('authz.yaml', 'default: sometimes\n');
    expect(() => new PolicyAuthorizer({ path, log })).toThrow(PolicyLoadError);
    expect(() => createAuthorizer({ authzConfig: path, authzKubeconfig: undefined }, { log })).toThrow(
      ConfigError,
    );
    expect(() =>
      createAuthorizer({ authzConfig: join(dir, 'nope.yaml'), authzKubeconfig: undefined }, { log }),
    ).toThrow(/nope\.yaml: cannot be read/);
  });
});

describe('the policy authorizer', () => {
  let logs: LogCapture;
  let authorizer: PolicyAuthorizer | undefined;
  const reloads: string[] = [];

  beforeEach(() => {
    logs = new LogCapture();
    reloads.length = 0;
  });
  afterEach(async () => {
    await authorizer?.close();
    authorizer = undefined;
  });

  function start(path: string): PolicyAuthorizer {
    authorizer = new PolicyAuthorizer({
      path,
      log: createLogger({ level: 'debug', destination: logs }),
      events: { reload: (source, result) => reloads.push(`${source}:${result}`) },
      pollMs: 60_000,
    });
    return authorizer;
  }

  it('decides from rules, then RBAC files', () => {
    write('rbac.yaml', RBAC);
    const a = start(
      write(
        'authz.yaml',
        'rules:\n  - path: /admin\n    allow: { groups: ["oidc:admins"] }\nrbac: { files: [rbac.yaml] }\n',
      ),
    );
    expect(a.decide(alice, get('/admin')).allowed).toBe(true);
    expect(a.decide(dev, get('/admin')).allowed).toBe(false);
    expect(a.decide(dev, get('/grafana/d/1')).allowed).toBe(true);
    expect(a.decide(alice, get('/grafana/d/1'))).toMatchObject({ allowed: false, source: 'rbac' });
    expect(reloads).toEqual(['file:ok']);
  });

  it('refuses with 400 a path it cannot judge, instead of guessing', () => {
    const a = start(
      write('authz.yaml', 'rules:\n  - path: /admin\n    allow: { groups: ["oidc:admins"] }\n'),
    );
    expect(() => a.decide(dev, get('/public/..%2Fadmin'))).toThrow(AppError);
    try {
      a.decide(dev, get('/public/..%2Fadmin'));
    } catch (error) {
      expect((error as AppError).status).toBe(400);
    }
    // An encoded /admin is still /admin.
    expect(a.decide(dev, get('/%61dmin')).allowed).toBe(false);
  });

  it('picks up a changed file, and keeps the last good policy when the new one is broken', () => {
    const path = write('authz.yaml', 'default: deny\nrules:\n  - allow: { users: ["alice@example.com"] }\n');
    const a = start(path);
    expect(a.decide(dev, get('/')).allowed).toBe(false);

    writeFileSync(path, 'default: deny\nrules:\n  - allow: { users: ["dev@example.com"] }\n');
    a.check();
    expect(a.decide(dev, get('/')).allowed).toBe(true);
    expect(reloads).toEqual(['file:ok', 'file:ok']);

    writeFileSync(path, 'default: deny\nrules:\n  - allow: { user: ["alice@example.com"] }\n');
    a.check();
    expect(a.decide(dev, get('/')).allowed).toBe(true);
    expect(reloads).toEqual(['file:ok', 'file:ok', 'file:error']);
    const error = logs
      .records()
      .find((r) => r['msg'] === 'authorization policy NOT reloaded: keeping the last good policy');
    expect(JSON.stringify(error?.['problems'])).toContain('user');
    expect(a.status()).toMatchObject({ mode: 'policy', lastReloadError: expect.stringContaining('user') });

    // The same broken bytes are not re-parsed or re-logged on every poll.
    a.check();
    expect(reloads).toHaveLength(3);
  });

  it('notices a change of an RBAC file (and a new file matching a glob) without being told', async () => {
    mkdirSync(join(dir, 'rbac'));
    const path = write('authz.yaml', 'rbac: { files: ["rbac/*.yaml"] }\n');
    const a = start(path);
    expect(a.decide(dev, get('/grafana/x')).allowed).toBe(false);
    write('rbac/new.yaml', RBAC);
    // fs.watch on the directory (no poll: it is set to a minute here).
    for (let i = 0; i < 100 && !a.decide(dev, get('/grafana/x')).allowed; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(a.decide(dev, get('/grafana/x')).allowed).toBe(true);
  });
});

describe('hostile but well-formed files never take the reloader down (issue 11 item 15)', () => {
  let authorizer: PolicyAuthorizer | undefined;
  let logs: LogCapture;
  afterEach(async () => {
    await authorizer?.close();
    authorizer = undefined;
  });

  const GOOD =
    'default: deny\nrules:\n  - allow: { users: ["dev@example.com"] }\nrbac: { files: ["rbac/*.yaml"] }\n';
  /** 101 aliases: the yaml library's guard against "billion laughs" throws on toJS(). */
  const ALIAS_BOMB = `default: deny\nx: &a [1]\nrules: [${Array.from({ length: 101 }, () => '*a').join(', ')}]\n`;
  const RBAC_ALIAS_BOMB = `kind: ClusterRole\nmetadata: { name: r }\nx: &a [1]\ny: [${Array.from({ length: 101 }, () => '*a').join(', ')}]\n`;

  function start(): string {
    mkdirSync(join(dir, 'rbac'));
    const path = write('authz.yaml', GOOD);
    logs = new LogCapture();
    authorizer = new PolicyAuthorizer({
      path,
      log: createLogger({ level: 'info', destination: logs }),
      pollMs: 60_000,
    });
    return path;
  }

  it.each([
    ['101 aliases in the policy', 'authz.yaml', ALIAS_BOMB, /alias/i],
    ['101 aliases in an RBAC file', 'rbac/bomb.yaml', RBAC_ALIAS_BOMB, /alias/i],
    ['nesting 100,000 levels deep', 'authz.yaml', `${'['.repeat(100_000)}${']'.repeat(100_000)}`, /./],
    [
      'bytes that are not UTF-8',
      'rbac/latin1.yaml',
      Buffer.from([0x6b, 0x3a, 0x20, 0xff, 0xfe, 0x0a]),
      /not UTF-8/,
    ],
    ['a file over 4 MiB', 'rbac/huge.yaml', `# ${'x'.repeat(4 * 1024 * 1024 + 10)}\n`, /bytes allowed/],
  ])('%s: kept the last good policy, said why', (_name, file, content, why) => {
    const path = start();
    const dev = identityFromClaims({ sub: 'd', email: 'dev@example.com', email_verified: true }, NAMING);
    expect(authorizer!.decide(dev, get('/')).allowed).toBe(true);
    writeFileSync(file === 'authz.yaml' ? path : join(dir, file), content);
    expect(() => authorizer!.check()).not.toThrow();
    expect(authorizer!.decide(dev, get('/')).allowed).toBe(true);
    const line = logs.records().find((r) => String(r['msg']).includes('NOT reloaded'));
    expect(line, logs.text).toBeDefined();
    expect(JSON.stringify(line)).toMatch(why);
    expect(authorizer!.status()['lastReloadError']).toBeDefined();
  });

  it('a glob matching more than 1000 files is refused', () => {
    start();
    for (let i = 0; i <= 1000; i++) write(`rbac/${i}.yaml`, '');
    authorizer!.check();
    expect(String(authorizer!.status()['lastReloadError'])).toContain('more than 1000');
  });

  it('at start-up the same files stop start-up with the list of problems, not a stack trace', () => {
    const path = write('authz.yaml', ALIAS_BOMB);
    expect(() => new PolicyAuthorizer({ path, log: createLogger({ level: 'silent' }) })).toThrow(
      PolicyLoadError,
    );
  });

  it('a throw from anywhere inside a reload keeps the policy and is logged', () => {
    let calls = 0;
    logs = new LogCapture();
    authorizer = new PolicyAuthorizer({
      path: '/p.yaml',
      log: createLogger({ level: 'info', destination: logs }),
      pollMs: 60_000,
      readFile: () => {
        calls++;
        if (calls > 1) throw Object.assign(new Error('odd'), { code: undefined });
        return 'default: allow\n';
      },
    });
    expect(() => authorizer!.check()).not.toThrow();
    const dev = identityFromClaims({ sub: 'd', email: 'dev@example.com', email_verified: true }, NAMING);
    expect(authorizer!.decide(dev, get('/')).allowed).toBe(true);
  });
});
