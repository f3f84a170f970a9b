import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AuditRequest, createAuditLog, NO_AUDIT, whoFragment } from '../../src/audit/auditLog.ts';
import { type EvaluablePolicy, evaluate } from '../../src/authz/evaluate.ts';
import type { Decision } from '../../src/authz/policy.ts';
import { buildRbacIndex } from '../../src/authz/rbac.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger, requestContext } from '../../src/log.ts';
import { LogCapture } from '../support/service.ts';

/** The audit stream's parts: its settings, the writer (stdout, file, off, the sample), what decided. */

const base = {
  OIDC_ISSUER_URL: 'https://dex.example.com/',
  OIDC_CLIENT_ID: 'c',
  OIDC_CLIENT_SECRET: 's',
  COOKIE_SECRET: 'unit-test-cookie-secret-4f9a2c7e1b8d3056',
};
const request: AuditRequest = {
  method: 'GET',
  host: 'grafana.example.com',
  path: '/d/x',
  clientIp: '203.0.113.9',
};
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const problemsOf = (env: Record<string, string>): string => {
  try {
    loadConfig({ ...base, ...env });
    return '';
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
};

describe('AUDIT_LOG, AUDIT_ALLOW and POD_NAME', () => {
  it('default to stdout, every allowed decision, and the host name', () => {
    const config = loadConfig(base);
    expect(config.auditLog).toEqual({ kind: 'stdout' });
    expect(config.auditAllowRate).toBe(1);
    expect(config.replicaName).toBeUndefined();
  });

  it('take off, a file path, none and a sample rate', () => {
    const config = loadConfig({
      ...base,
      AUDIT_LOG: '/var/log/audit.jsonl',
      AUDIT_ALLOW: '0.01',
      POD_NAME: 'dfa-1',
    });
    expect(config.auditLog).toEqual({ kind: 'file', path: '/var/log/audit.jsonl' });
    expect(config.auditAllowRate).toBe(0.01);
    expect(config.replicaName).toBe('dfa-1');
    expect(loadConfig({ ...base, AUDIT_LOG: 'OFF', AUDIT_ALLOW: 'none' })).toMatchObject({
      auditLog: { kind: 'off' },
      auditAllowRate: 0,
    });
  });

  it.each([
    [{ AUDIT_LOG: 'audit.log' }, 'AUDIT_LOG must be stdout, off or an absolute file path'],
    [{ AUDIT_ALLOW: '2' }, 'AUDIT_ALLOW must be all, none or a sample rate between 0 and 1'],
    [{ AUDIT_ALLOW: 'some' }, 'AUDIT_ALLOW must be all, none or a sample rate between 0 and 1'],
    [{ AUDIT_ALLOW: '-0.5' }, 'AUDIT_ALLOW must be all, none or a sample rate between 0 and 1'],
  ])('refuse %o with a clear message', (env, message) => {
    expect(problemsOf(env)).toContain(message);
  });
});

describe('the audit writer', () => {
  it('writes whole JSON lines into the logger’s own destination (gathered for a moment into one write), never merged with the log lines', async () => {
    const capture = new LogCapture();
    const log = createLogger({ destination: capture });
    const audit = createAuditLog({ target: { kind: 'stdout' }, allowRate: 1, replica: 'replica-1', log });
    log.info('before');
    audit.login({ user: 'jane', sub: 'sub-1', groups: ['admins'] }, request);
    log.info('after');
    await new Promise((r) => setTimeout(r, 120));
    const records = capture.records();
    expect(records.map((r) => r['msg'] ?? r['event'])).toEqual(['before', 'after', 'login']);
    expect(records[2]).toEqual({
      audit: true,
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      event: 'login',
      replica: 'replica-1',
      user: 'jane',
      sub: 'sub-1',
      groups: ['admins'],
      method: 'GET',
      host: 'grafana.example.com',
      path: '/d/x',
      client: '203.0.113.9',
    });
    expect(records[0]).not.toHaveProperty('audit');
  });

  it('writes events whatever LOG_LEVEL says, with the request id of the request being served', async () => {
    const capture = new LogCapture();
    const log = createLogger({ level: 'silent', destination: capture });
    const audit = createAuditLog({ target: { kind: 'stdout' }, allowRate: 1, log });
    requestContext.run({ requestId: 'req-7', host: 'grafana.example.com', path: '/x' }, () =>
      audit.revocation({ sub: 'sub-1' }, 2, 'user'),
    );
    await new Promise((r) => setTimeout(r, 120));
    expect(capture.records()).toEqual([
      expect.objectContaining({
        event: 'revocation',
        replica: hostname(),
        sub: 'sub-1',
        sessions: 2,
        via: 'user',
        requestId: 'req-7',
        host: 'grafana.example.com',
      }),
    ]);
  });

  it('prints each event readably as an `audit <event>` record where the logs are pretty (a terminal, the demo)', async () => {
    const capture = new LogCapture();
    const log = createLogger({ pretty: true, singleLine: true, destination: capture }).child({ replica: 1 });
    createAuditLog({ target: { kind: 'stdout' }, allowRate: 1, log }).login({ user: 'jane' }, request);
    await new Promise((r) => setTimeout(r, 120));
    expect(capture.lines).toHaveLength(1);
    expect(capture.lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: audit login /);
    expect(capture.lines[0]).toContain('"user":"jane"');
  });

  it('samples allowed decisions at AUDIT_ALLOW (all, none, a rate)', () => {
    const log = createLogger({ destination: new LogCapture() });
    const draws = [0.005, 0.5, 0.009, 0.99];
    const sampled = createAuditLog({
      target: { kind: 'stdout' },
      allowRate: 0.01,
      log,
      random: () => draws.shift() ?? 1,
    });
    expect([1, 2, 3, 4].map(() => sampled.sampleAllow())).toEqual([true, false, true, false]);
    expect(
      createAuditLog({ target: { kind: 'stdout' }, allowRate: 1, log, random: () => 0.999 }).sampleAllow(),
    ).toBe(true);
    expect(
      createAuditLog({ target: { kind: 'stdout' }, allowRate: 0, log, random: () => 0 }).sampleAllow(),
    ).toBe(false);
    expect(createAuditLog({ target: { kind: 'off' }, allowRate: 1, log })).toBe(NO_AUDIT);
  });

  it('appends to a file, and after a rename (log rotation) reopens it on request (SIGHUP)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-file-'));
    dirs.push(dir);
    const path = join(dir, 'audit.jsonl');
    const log = createLogger({ destination: new LogCapture() });
    const audit = createAuditLog({ target: { kind: 'file', path }, allowRate: 1, replica: 'r', log });
    const decision = (requestId: string) =>
      audit.decision({
        status: 403,
        outcome: 'forbidden',
        request,
        requestId,
        decidedBy: { source: 'default' },
      });
    decision('one');
    await waitFor(() => existsSync(path) && readFileSync(path, 'utf8').includes('"one"'));
    renameSync(path, `${path}.1`);
    audit.reopen();
    decision('two');
    await waitFor(() => existsSync(path) && readFileSync(path, 'utf8').includes('"two"'));
    audit.close();
    const lines = (file: string) =>
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
    expect(lines(`${path}.1`).map((e) => e.requestId)).toEqual(['one']);
    expect(lines(path)).toEqual([
      expect.objectContaining({
        event: 'decision',
        decision: 'deny',
        status: 403,
        source: 'default',
        requestId: 'two',
      }),
    ]);
  });
});

describe('the hot path’s allowed decisions', () => {
  it('are the very lines decision() writes, made from parts kept per session and per decision, whatever the values hold', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-hot-'));
    dirs.push(dir);
    const path = join(dir, 'audit.jsonl');
    const log = createLogger({ destination: new LogCapture() });
    const audit = createAuditLog({
      target: { kind: 'file', path },
      allowRate: 1,
      replica: 'r"1',
      log,
      now: () => 0,
    });
    const who = { user: 'jane "j" \u2028 \\', sub: 'sub\n1', groups: ['a,b', '\u0000', 'ü', '"'] };
    const hostile: AuditRequest = { method: 'GET', host: 'h"x', path: '/p\\"\u007f', clientIp: '::1' };
    const decisions: readonly Decision[] = [
      { allowed: true, source: 'rule', rule: { index: 2, match: 'h/"p' } },
      { allowed: true, source: 'rbac', binding: 'b"1' },
      { allowed: true },
    ];
    for (const [i, by] of decisions.entries()) {
      audit.decision({
        status: 200,
        outcome: 'allow',
        who,
        request: hostile,
        decidedBy: by,
        requestId: `id-${i}`,
      });
      audit.allowed(whoFragment(who), hostile, by, `id-${i}`);
      audit.allowed(whoFragment(who), hostile, by, `id-${i}`); // the decision's fields, made once, again
    }
    audit.allowed(whoFragment(undefined), request, decisions[2] as Decision, 'nobody');
    audit.decision({
      status: 200,
      outcome: 'allow',
      request,
      decidedBy: decisions[2] as Decision,
      requestId: 'nobody',
    });
    audit.close();
    await waitFor(() => existsSync(path) && readFileSync(path, 'utf8').split('\n').length > 11);
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(11);
    for (let i = 0; i < 3; i++) {
      expect(lines[3 * i + 1]).toBe(lines[3 * i]);
      expect(lines[3 * i + 2]).toBe(lines[3 * i]);
      expect(JSON.parse(lines[3 * i] as string)).toMatchObject({
        ...who,
        host: 'h"x',
        decision: 'allow',
        status: 200,
      });
    }
    expect(lines[10]).toBe(lines[9]);
  });
});

describe('an audit file under load', () => {
  it('gets every line whole, in order, whatever its characters and length (lines longer than a write included)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-bytes-'));
    dirs.push(dir);
    const path = join(dir, 'audit.jsonl');
    const log = createLogger({ destination: new LogCapture() });
    const audit = createAuditLog({ target: { kind: 'file', path }, allowRate: 1, replica: 'r', log });
    const users = ['jane', '日本語のユーザー'.repeat(40), '😀'.repeat(300), 'a"\\\n'];
    const many = Array.from({ length: 3000 }, (_, i) => `grupo-ñ-${i}-€`);
    const by = { allowed: true, source: 'default' } as const;
    for (let i = 0; i < 4000; i++) {
      const who = { user: users[i % users.length], sub: `s${i}`, groups: i === 1234 ? many : ['g'] };
      audit.allowed(whoFragment(who), request, by, `id-${i}`);
    }
    audit.close();
    await waitFor(() => existsSync(path) && readFileSync(path, 'utf8').split('\n').length > 4000);
    const lines = readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.requestId)).toEqual(Array.from({ length: 4000 }, (_, i) => `id-${i}`));
    expect(lines.map((l) => l.user)).toEqual(Array.from({ length: 4000 }, (_, i) => users[i % users.length]));
    expect(lines[1234].groups).toEqual(many);
  });
});

describe('an audit file that cannot be written', () => {
  it('is said once in the log, and never fails the caller', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-bad-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'not-a-directory'), '');
    const capture = new LogCapture();
    const audit = createAuditLog({
      target: { kind: 'file', path: join(dir, 'not-a-directory', 'audit.jsonl') },
      allowRate: 1,
      log: createLogger({ destination: capture }),
    });
    for (let i = 0; i < 3; i++) expect(() => audit.login({ user: 'jane' }, request)).not.toThrow();
    await waitFor(() => capture.records().some((r) => r['msg'] === 'audit log: cannot write the file'));
    audit.login({ user: 'jane' }, request);
    await new Promise((r) => setTimeout(r, 50));
    expect(capture.records().filter((r) => r['msg'] === 'audit log: cannot write the file')).toHaveLength(1);
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(condition()).toBe(true);
}

describe('what decided, as the audit stream names it', () => {
  const identity = (groups: string[]) =>
    identityFromClaims(
      { sub: 's', email: 'jane@example.com', email_verified: true, groups },
      loadConfig(base),
    );
  const index = buildRbacIndex({
    roles: [
      {
        name: 'viewer',
        labels: {},
        rules: [{ verbs: ['get'], nonResourceURLs: ['/grafana/*'] }],
        scope: 'default',
      },
    ],
    bindings: [
      {
        name: 'viewers-binding',
        scope: 'default',
        roleRef: { kind: 'ClusterRole', name: 'viewer' },
        subjects: [{ kind: 'Group', name: 'viewers' }],
      },
    ],
  } as unknown as Parameters<typeof buildRbacIndex>[0]);
  const policy: EvaluablePolicy = {
    defaultAllow: false,
    rules: [
      {
        index: 1,
        host: 'grafana.example.com',
        path: '/admin',
        allow: { users: [], groups: ['admins'], emails: [], emailDomains: [] },
      },
    ],
    rbac: index,
  };
  const at = (path: string) => ({ method: 'GET', scheme: 'https', host: 'grafana.example.com', path });

  it('the rule (its position and what it matches), allowing or refusing', () => {
    expect(evaluate(identity(['admins']), at('/admin/x'), policy)).toMatchObject({
      allowed: true,
      source: 'rule',
      rule: { index: 1, match: 'grafana.example.com/admin' },
    });
    expect(evaluate(identity(['viewers']), at('/admin/x'), policy)).toMatchObject({
      allowed: false,
      source: 'rule',
      rule: { index: 1, match: 'grafana.example.com/admin' },
    });
  });

  it('the ClusterRoleBinding that granted it; none when RBAC refused', () => {
    expect(evaluate(identity(['viewers']), at('/grafana/d'), policy)).toMatchObject({
      allowed: true,
      source: 'rbac',
      binding: 'viewers-binding',
    });
    const refused = evaluate(identity(['others']), at('/grafana/d'), policy);
    expect(refused).toMatchObject({ allowed: false, source: 'rbac' });
    expect(refused).not.toHaveProperty('binding');
  });

  it('the default, when nothing else decided', () => {
    const open: EvaluablePolicy = { defaultAllow: true, rules: [], rbac: undefined };
    expect(evaluate(identity([]), at('/x'), open)).toMatchObject({ allowed: true, source: 'default' });
  });
});
