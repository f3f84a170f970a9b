import { describe, expect, it } from 'vitest';
import { type EvaluablePolicy, evaluate } from '../../src/authz/evaluate.ts';
import { canonicalPath } from '../../src/authz/path.ts';
import { defaultAuthorizer } from '../../src/authz/policy.ts';
import {
  type AllowList,
  admits,
  emailDomainMatches,
  hostMatches,
  normaliseRulePath,
  pathMatches,
  type Rule,
} from '../../src/authz/rules.ts';
import { type Identity, identityFromClaims } from '../../src/identity/claims.ts';

/** Per-route rules (DESIGN §6): pure functions of (identity, request, policy), table-tested. */

const NAMING = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: 'oidc:' };

function who(claims: Record<string, unknown>): Identity {
  return identityFromClaims({ sub: 'sub-1', email_verified: true, ...claims }, NAMING);
}

const alice = who({ email: 'alice@example.com', groups: ['admins', 'engineering'] });
const bob = who({ email: 'bob@partner.io', groups: 'engineering' });
const carol = who({ email: 'carol@example.com' });
const unverified = who({ email: 'eve@example.com', email_verified: false, groups: ['admins'] });

function allow(partial: Partial<AllowList>): AllowList {
  return { users: [], groups: [], emails: [], emailDomains: [], ...partial };
}

function rule(
  index: number,
  host: string | undefined,
  path: string | undefined,
  a: Partial<AllowList>,
): Rule {
  return { index, host, path: normaliseRulePath(path), allow: allow(a) };
}

describe('host patterns', () => {
  it.each([
    ['grafana.example.com', 'grafana.example.com', true],
    ['grafana.example.com', 'grafana.example.com:8443', true],
    ['grafana.example.com:8443', 'grafana.example.com:8443', true],
    ['grafana.example.com:8443', 'grafana.example.com', false],
    ['grafana.example.com', 'prometheus.example.com', false],
    ['grafana.example.com', 'grafana.example.com.evil.io', false],
    ['*.example.com', 'grafana.example.com', true],
    ['*.example.com', 'a.b.example.com', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'badexample.com', false],
    ['*.example.com', 'grafana.example.com:8443', true],
  ])('%s against %s → %s', (pattern, host, expected) => {
    expect(hostMatches(pattern, host)).toBe(expected);
  });

  it('a rule without a host matches every host', () => {
    expect(hostMatches(undefined, 'anything.example.org')).toBe(true);
  });
});

describe('path prefixes on segment boundaries', () => {
  it.each([
    ['/admin', '/admin', true],
    ['/admin', '/admin/', true],
    ['/admin', '/admin/users/1', true],
    ['/admin', '/administrator', false],
    ['/admin', '/', false],
    ['/admin/', '/admin', true],
    ['/admin/', '/admin/x', true],
    ['/', '/anything/at/all', true],
    [undefined, '/anything', true],
  ])('%s against %s → %s', (prefix, path, expected) => {
    expect(pathMatches(normaliseRulePath(prefix), path)).toBe(expected);
  });
});

describe('the path the policy judges', () => {
  it.each([
    ['/admin', '/admin'],
    ['/%61dmin', '/admin'],
    ['//admin///x', '/admin/x'],
    ['/a%20b', '/a b'],
    ['/admin%2Fsecret', '/admin/secret'],
    ['/.well-known/x', '/.well-known/x'],
  ])('%s is judged as %s', (raw, canonical) => {
    expect(canonicalPath(raw)).toBe(canonical);
  });

  it.each([
    ['/public/../admin'],
    ['/public/%2e%2e/admin'],
    ['/public/..%2Fadmin'],
    ['/./admin'],
    ['/%zz'],
    ['/a%00b'],
  ])('%s cannot be judged (refused with 400 by the authorizer)', (raw) => {
    expect(canonicalPath(raw)).toBeUndefined();
  });
});

describe('email domains', () => {
  it.each([
    ['example.com', 'a@example.com', true],
    ['example.com', 'a@EXAMPLE.com', true],
    ['example.com', 'a@sub.example.com', false],
    ['*.example.com', 'a@sub.example.com', true],
    ['.example.com', 'a@sub.example.com', true],
    ['*.example.com', 'a@example.com', false],
    ['*', 'a@anything.org', true],
    ['example.com', 'a@notexample.com', false],
  ])('%s admits %s → %s', (pattern, email, expected) => {
    expect(emailDomainMatches(pattern, email)).toBe(expected);
  });
});

describe('allow lists', () => {
  const groups = (i: Identity) => new Set([...i.groups, 'system:authenticated']);
  it.each([
    ['users', allow({ users: ['alice@example.com'] }), alice, true],
    ['users, another user', allow({ users: ['alice@example.com'] }), bob, false],
    ['groups (prefixed as the API server names them)', allow({ groups: ['oidc:admins'] }), alice, true],
    ['groups without the prefix do not match', allow({ groups: ['admins'] }), alice, false],
    ['a string groups claim', allow({ groups: ['oidc:engineering'] }), bob, true],
    ['no groups claim', allow({ groups: ['oidc:engineering'] }), carol, false],
    ['system:authenticated', allow({ groups: ['system:authenticated'] }), carol, true],
    ['emails, case-insensitive', allow({ emails: ['Alice@Example.com'] }), alice, true],
    ['email domains', allow({ emailDomains: ['example.com'] }), carol, true],
    ['email domains, other domain', allow({ emailDomains: ['example.com'] }), bob, false],
    ['unverified emails never match emails', allow({ emails: ['eve@example.com'] }), unverified, false],
    ['an empty allow list', allow({}), alice, false],
  ])('%s', (_name, list, identity, expected) => {
    expect(admits(list, identity, groups(identity))).toBe(expected);
  });
});

describe('the identity as the API server forms it', () => {
  it.each([
    ['an array groups claim', { groups: ['a', 'b'] }, ['oidc:a', 'oidc:b']],
    ['a string groups claim', { groups: 'a' }, ['oidc:a']],
    ['a missing groups claim', {}, []],
    ['non-string entries are dropped', { groups: ['a', 7, null] }, ['oidc:a']],
  ])('%s', (_name, claims, groups) => {
    expect(who({ email: 'x@example.com', ...claims }).groups).toEqual(groups);
  });

  it('applies the username claim and prefix', () => {
    const id = identityFromClaims(
      { sub: 's', preferred_username: 'jdoe', email: 'j@example.com' },
      { ...NAMING, usernameClaim: 'preferred_username', usernamePrefix: 'oidc:' },
    );
    expect(id.user).toBe('oidc:jdoe');
  });
});

describe('evaluate(): baseline, first matching rule, RBAC, default', () => {
  const policy = (rules: Rule[], defaultAllow: boolean): EvaluablePolicy => ({
    rules,
    defaultAllow,
    rbac: undefined,
  });
  const request = (host: string, path: string, method = 'GET') => ({ method, scheme: 'https', host, path });
  const rules = [
    rule(1, 'grafana.example.com', '/admin', { groups: ['oidc:admins'] }),
    rule(2, 'grafana.example.com', undefined, { emailDomains: ['example.com'] }),
    rule(3, '*.internal.example.com', '/', { users: ['bob@partner.io'] }),
  ];

  it.each([
    ['admins reach /admin', alice, 'grafana.example.com', '/admin/users', true],
    [
      'the first match decides: /admin is refused to a non-admin even though rule 2 would allow',
      carol,
      'grafana.example.com',
      '/admin',
      false,
    ],
    ['rule 2 allows the domain elsewhere on the host', carol, 'grafana.example.com', '/d/home', true],
    ['rule 2 refuses another domain', bob, 'grafana.example.com', '/d/home', false],
    ['wildcard host rule allows its user', bob, 'tools.internal.example.com', '/', true],
    ['wildcard host rule refuses others', alice, 'tools.internal.example.com', '/', false],
  ])('%s', (_name, identity, host, path, allowed) => {
    expect(evaluate(identity, request(host, path), policy(rules, false)).allowed).toBe(allowed);
  });

  it('no matching rule: default allow lets any verified user in, default deny refuses', () => {
    expect(evaluate(bob, request('other.example.com', '/'), policy(rules, true)).allowed).toBe(true);
    const denied = evaluate(bob, request('other.example.com', '/'), policy(rules, false));
    expect(denied).toMatchObject({ allowed: false, code: 'forbidden', source: 'default' });
  });

  it('a refusal by a rule names what would have allowed it', () => {
    const denied = evaluate(carol, request('grafana.example.com', '/admin'), policy(rules, true));
    expect(denied).toMatchObject({
      allowed: false,
      source: 'rule',
      wouldAllow: { groups: ['oidc:admins'], users: [], emails: [], emailDomains: [] },
    });
  });

  it('email_verified: false is refused before any rule, like the default authorizer', () => {
    const open = [rule(1, undefined, '/', { groups: ['oidc:admins'] })];
    expect(evaluate(unverified, request('a.example.com', '/'), policy(open, true))).toMatchObject({
      allowed: false,
      code: 'email_not_verified',
    });
    expect(defaultAuthorizer.decide(unverified, { method: 'GET', host: 'a', path: '/' })).toMatchObject({
      allowed: false,
      code: 'email_not_verified',
    });
  });

  it('a token without the user name claim is refused', () => {
    const nameless = identityFromClaims({ sub: 's', groups: ['admins'] }, NAMING);
    expect(evaluate(nameless, request('a.example.com', '/'), policy([], true))).toMatchObject({
      allowed: false,
      code: 'forbidden',
    });
  });
});
