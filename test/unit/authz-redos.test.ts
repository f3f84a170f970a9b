import { describe, expect, it } from 'vitest';
import { MAX_JUDGED_PATH, PolicyAuthorizer } from '../../src/authz/authorizer.ts';
import { parsePolicy, takeSnapshot } from '../../src/authz/policyFile.ts';
import { buildRbacIndex, type MatchWork, nonResourceURLMatches, rbacGrantees } from '../../src/authz/rbac.ts';
import type { ClusterRole, ClusterRoleBinding, UrlRequest } from '../../src/authz/rbacObjects.ts';
import { AppError } from '../../src/errors.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger } from '../../src/log.ts';

/**
 * URL patterns are matched in time linear in the path (issue 11 item 13): D2iQ-style globs by an
 * NFA simulation, `~regex` by an RE2 engine, paths capped, and the denial page's "who would have
 * been allowed" search bounded. Every test here measures work (steps) or uses inputs on which the
 * old backtracking matchers ran for minutes (so the test would time out), never the clock.
 */

const req = (path: string, host = 'x.example.com'): UrlRequest => ({
  verb: 'get',
  scheme: 'https',
  host,
  path,
});

describe('D2iQ-style globs match in linear time', () => {
  it('a pattern of many stars against a 16 KB path costs at most one step per character and token', () => {
    const pattern = `https://x.example.com/${'*a'.repeat(12)}*b`;
    const path = `/${'a'.repeat(16 * 1024)}`;
    const work: MatchWork = { steps: 0 };
    expect(nonResourceURLMatches(pattern, req(path), work)).toBe(false);
    const full = `https://x.example.com${path}`.length;
    const tokens = pattern.length;
    expect(work.steps).toBeLessThanOrEqual(full * tokens + 1);
  });

  it('** crosses segments, * does not, a trailing * is a prefix', () => {
    const cases: [string, string, boolean][] = [
      ['https://x.example.com/a/*/c', '/a/b/c', true],
      ['https://x.example.com/a/*/c', '/a/b/b/c', false],
      ['https://x.example.com/a/**/c', '/a/b/b/c', true],
      ['https://x.example.com/a/**', '/a/', true],
      ['https://x.example.com/a*', '/a/b', true],
      ['https://*.example.com/a', '/a', true],
      ['https://*.example.com/a', '/b', false],
    ];
    for (const [pattern, path, expected] of cases) {
      expect(nonResourceURLMatches(pattern, req(path)), `${pattern} ~ ${path}`).toBe(expected);
    }
  });
});

describe('~regex entries run on a linear-time (RE2) engine', () => {
  it('a pattern that backtracks exponentially in JavaScript answers at once', () => {
    // (a+)+$ against a run of a's ending in "!" takes a backtracking engine 2^n steps.
    const path = `/${'a'.repeat(5_000)}!`;
    expect(nonResourceURLMatches('~^https://x\\.example\\.com/(a+)+$', req(path))).toBe(false);
    expect(nonResourceURLMatches('~^https://x\\.example\\.com/(a+)+!$', req(path))).toBe(true);
  });

  it.each([
    ['a backreference', '~(a)\\1'],
    ['a lookahead', '~^https://(?=x)'],
    ['a lookbehind', '~(?<=a)b'],
  ])('refuses %s when the file is read, saying why', (_name, pattern) => {
    const role = `kind: ClusterRole\nmetadata: { name: r }\nrules: [{ verbs: [get], nonResourceURLs: ['${pattern}'] }]\n`;
    const load = parsePolicy({
      ...takeSnapshot('/policy.yaml', (p) => (p === '/policy.yaml' ? 'rbac: { files: [/rbac.yaml] }' : role)),
    });
    expect(load.spec).toBeUndefined();
    expect(load.problems.join('\n')).toMatch(/RE2 syntax/);
  });

  it('refuses URL entries longer than 1024 characters', () => {
    const role = `kind: ClusterRole\nmetadata: { name: r }\nrules: [{ verbs: [get], nonResourceURLs: ['/${'a'.repeat(1100)}'] }]\n`;
    const load = parsePolicy(
      takeSnapshot('/policy.yaml', (p) => (p === '/policy.yaml' ? 'rbac: { files: [/rbac.yaml] }' : role)),
    );
    expect(load.problems.join('\n')).toMatch(/longer than 1024 characters/);
  });
});

describe('paths are capped', () => {
  const authorizer = new PolicyAuthorizer({
    path: '/policy.yaml',
    log: createLogger({ level: 'silent' }),
    readFile: () => 'default: allow\n',
    pollMs: 60_000,
  });
  const alice = identityFromClaims(
    { sub: 'a', email: 'alice@example.com', email_verified: true },
    { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: '' },
  );

  it(`a path longer than ${MAX_JUDGED_PATH} characters gets 414, not a judgement`, async () => {
    try {
      authorizer.decide(alice, { method: 'GET', host: 'h', path: `/${'a'.repeat(MAX_JUDGED_PATH)}` });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).status).toBe(414);
    }
    expect(authorizer.decide(alice, { method: 'GET', host: 'h', path: `/${'a'.repeat(8000)}` }).allowed).toBe(
      true,
    );
    await authorizer.close();
  });
});

describe('"who would have been allowed" is bounded', () => {
  it('looks at no more than its budget of URL entries, however many bindings there are', () => {
    const roles: ClusterRole[] = [];
    const bindings: ClusterRoleBinding[] = [];
    for (let i = 0; i < 10_000; i++) {
      roles.push({
        kind: 'ClusterRole',
        name: `r${i}`,
        scope: 'default',
        labels: {},
        rules: [{ verbs: ['get'], nonResourceURLs: [`/p${i}/*`] }],
        aggregation: undefined,
      });
      bindings.push({
        kind: 'ClusterRoleBinding',
        name: `b${i}`,
        scope: 'default',
        roleRef: { kind: 'ClusterRole', name: `r${i}` },
        subjects: [{ kind: 'Group', name: `g${i}` }],
      });
    }
    const index = buildRbacIndex({ roles, bindings });
    const work: MatchWork = { steps: 0 };
    expect(rbacGrantees(index, req('/nothing'), 20, 2_000, work)).toEqual({ users: [], groups: [] });
    expect(work.steps).toBeLessThanOrEqual(2_000);
    // Within the budget, the answer is the same as an unbounded search.
    expect(rbacGrantees(index, req('/p7/x')).groups).toEqual(['g7']);
  });
});
