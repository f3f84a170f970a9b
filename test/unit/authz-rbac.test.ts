import { describe, expect, it } from 'vitest';
import { type EvaluablePolicy, evaluate } from '../../src/authz/evaluate.ts';
import {
  buildRbacIndex,
  nonResourceURLMatches,
  rbacAllows,
  rbacGrantees,
  ruleMatches,
} from '../../src/authz/rbac.ts';
import {
  type ClusterRole,
  type ClusterRoleBinding,
  expandLists,
  parseRbacObject,
  type RbacObjects,
  type UrlRequest,
} from '../../src/authz/rbacObjects.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';

/**
 * Kubernetes RBAC for URLs: `nonResourceURLs` and verbs matched as the API server matches them
 * (pkg/apis/rbac/v1/evaluation_helpers.go), plus D2iQ traefik-forward-auth's full-URL entries.
 */

const req = (path: string, verb = 'get', host = 'grafana.example.com', scheme = 'https'): UrlRequest => ({
  verb,
  scheme,
  host,
  path,
});

describe('nonResourceURLs, as Kubernetes matches them', () => {
  it.each([
    ['*', '/anything/at/all', true],
    ['/healthz', '/healthz', true],
    ['/healthz', '/healthz/', false],
    ['/healthz', '/healthzz', false],
    ['/logs/*', '/logs/', true],
    ['/logs/*', '/logs/a/b/c', true],
    ['/logs/*', '/logs', false],
    ['/logs*', '/logs', true],
    ['/logs*', '/logsxyz/1', true],
    ['/logs**', '/logs/a', true],
    ['/', '/', true],
    ['/', '/x', false],
    // Kubernetes treats a '*' that is not last literally: it never matches a real path.
    ['/a/*/c', '/a/b/c', false],
  ])('%s against %s → %s', (pattern, path, expected) => {
    expect(nonResourceURLMatches(pattern, req(path))).toBe(expected);
  });
});

describe("D2iQ traefik-forward-auth's full-URL entries keep working", () => {
  it.each([
    ['https://grafana.example.com/admin', req('/admin'), true],
    ['https://grafana.example.com/admin', req('/admin', 'get', 'other.example.com'), false],
    ['https://grafana.example.com/admin', req('/admin', 'get', 'grafana.example.com', 'http'), false],
    ['https://Grafana.Example.com:443/admin', req('/admin'), true],
    ['https://grafana.example.com/*', req('/a/b/c'), true],
    ['https://grafana.example.com/d/*/view', req('/d/abc/view'), true],
    ['https://grafana.example.com/d/*/view', req('/d/a/b/view'), false],
    ['https://grafana.example.com/d/**/view', req('/d/a/b/view'), true],
    ['https://*.example.com/metrics', req('/metrics', 'get', 'prometheus.example.com'), true],
    ['http://grafana.example.com:8080/x', req('/x', 'get', 'grafana.example.com:8080', 'http'), true],
    ['~^https://(grafana|prometheus)\\.example\\.com/api/', req('/api/health'), true],
    ['~^https://(grafana|prometheus)\\.example\\.com/api/', req('/ui/'), false],
  ])('%s against %o → %s', (pattern, request, expected) => {
    expect(nonResourceURLMatches(pattern, request)).toBe(expected);
  });
});

describe('verbs are the lowercased HTTP method, or *', () => {
  it.each([
    [['get'], 'get', true],
    [['get'], 'post', false],
    [['get', 'post'], 'post', true],
    [['*'], 'delete', true],
    [['GET'], 'get', false], // Kubernetes compares exactly
    [['head'], 'get', false],
  ])('%o with %s → %s', (verbs, verb, expected) => {
    expect(ruleMatches({ verbs, nonResourceURLs: ['*'] }, req('/', verb))).toBe(expected);
  });
});

function role(
  name: string,
  rules: { verbs: string[]; nonResourceURLs: string[] }[],
  labels = {},
): ClusterRole {
  return { kind: 'ClusterRole', name, scope: 'default', labels, rules, aggregation: undefined };
}

function binding(
  name: string,
  roleName: string,
  subjects: { kind: string; name: string }[],
  scope: ClusterRoleBinding['scope'] = 'default',
): ClusterRoleBinding {
  return {
    kind: 'ClusterRoleBinding',
    name,
    scope,
    roleRef: { kind: 'ClusterRole', name: roleName },
    subjects,
  };
}

const objects: RbacObjects = {
  roles: [
    role('grafana-view', [{ verbs: ['get', 'head'], nonResourceURLs: ['/grafana', '/grafana/*'] }]),
    role('grafana-edit', [{ verbs: ['*'], nonResourceURLs: ['/grafana/*'] }]),
    role('everyone-health', [{ verbs: ['get'], nonResourceURLs: ['/healthz'] }]),
    role('everyone-status', [{ verbs: ['get'], nonResourceURLs: ['/status'] }]),
    role('kommander-style', [{ verbs: ['get'], nonResourceURLs: ['https://ops.example.com/dkp/*'] }]),
  ],
  bindings: [
    binding('view-engineering', 'grafana-view', [{ kind: 'Group', name: 'oidc:engineering' }]),
    binding('edit-alice', 'grafana-edit', [{ kind: 'User', name: 'alice@example.com' }]),
    binding('health-all', 'everyone-health', [{ kind: 'Group', name: 'system:authenticated' }], 'opt-in'),
    binding('status-all', 'everyone-status', [{ kind: 'Group', name: 'system:authenticated' }]),
    binding('kommander', 'kommander-style', [{ kind: 'Group', name: 'oidc:ops' }]),
    binding('sa-only', 'grafana-edit', [{ kind: 'ServiceAccount', name: 'default' }]),
    binding('dangling', 'no-such-role', [{ kind: 'Group', name: 'oidc:engineering' }]),
  ],
};

describe('ClusterRoleBindings: User and Group subjects', () => {
  const index = buildRbacIndex(objects);
  const groups = (...g: string[]) => new Set([...g, 'system:authenticated']);

  it.each([
    [
      'a Group subject grants its members',
      'dev@example.com',
      groups('oidc:engineering'),
      req('/grafana/d/1'),
      true,
    ],
    [
      '… only the verbs of the role',
      'dev@example.com',
      groups('oidc:engineering'),
      req('/grafana/d/1', 'post'),
      false,
    ],
    ['… not to non-members', 'x@example.com', groups('oidc:sales'), req('/grafana/d/1'), false],
    ['a User subject grants that user', 'alice@example.com', groups(), req('/grafana/api', 'delete'), true],
    [
      '… and nobody else of the same name in a group',
      'bob@example.com',
      groups('alice@example.com'),
      req('/grafana/api', 'delete'),
      false,
    ],
    [
      'system:authenticated is every logged-in user, where the binding opts in',
      'x@example.com',
      groups(),
      req('/healthz'),
      true,
    ],
    ['… and grants nothing where it does not', 'x@example.com', groups(), req('/status'), false],
    [
      'full-URL entries on their host',
      'o@example.com',
      groups('oidc:ops'),
      req('/dkp/x', 'get', 'ops.example.com'),
      true,
    ],
    ['full-URL entries not on another host', 'o@example.com', groups('oidc:ops'), req('/dkp/x'), false],
    ['ServiceAccount subjects never match users', 'default', groups(), req('/grafana/x', 'post'), false],
  ])('%s', (_name, user, g, request, expected) => {
    expect(rbacAllows(index, user, g, request)).toBe(expected);
  });

  it('a binding to a missing ClusterRole grants nothing and is reported', () => {
    expect(index.dangling).toEqual(['dangling → no-such-role']);
  });

  it('names the subjects that would have been allowed', () => {
    expect(rbacGrantees(index, req('/grafana/d/1'))).toEqual({
      users: ['alice@example.com'],
      groups: ['oidc:engineering'],
    });
    expect(rbacGrantees(index, req('/grafana/d/1', 'post'))).toEqual({
      users: ['alice@example.com'],
      groups: [],
    });
  });
});

describe('aggregated ClusterRoles take the rules of the roles they select', () => {
  it('by matchLabels and matchExpressions', () => {
    const aggregated: ClusterRole = {
      kind: 'ClusterRole',
      name: 'dashboards',
      scope: 'default',
      labels: {},
      rules: [],
      aggregation: [
        { matchLabels: { 'example.com/aggregate-to-dashboards': 'true' }, matchExpressions: [] },
        {
          matchLabels: {},
          matchExpressions: [{ key: 'tier', operator: 'In', values: ['ui'] }],
        },
      ],
    };
    const index = buildRbacIndex({
      roles: [
        aggregated,
        role('grafana', [{ verbs: ['get'], nonResourceURLs: ['/grafana/*'] }], {
          'example.com/aggregate-to-dashboards': 'true',
        }),
        role('kibana', [{ verbs: ['get'], nonResourceURLs: ['/kibana/*'] }], { tier: 'ui' }),
        role('secret', [{ verbs: ['get'], nonResourceURLs: ['/secret/*'] }], { tier: 'db' }),
      ],
      bindings: [binding('b', 'dashboards', [{ kind: 'Group', name: 'viewers' }])],
    });
    const g = new Set(['viewers']);
    expect(rbacAllows(index, 'u', g, req('/grafana/x'))).toBe(true);
    expect(rbacAllows(index, 'u', g, req('/kibana/x'))).toBe(true);
    expect(rbacAllows(index, 'u', g, req('/secret/x'))).toBe(false);
  });
});

describe('reading RBAC objects', () => {
  it('reads ClusterRoles and ClusterRoleBindings, ignores other kinds, expands Lists', () => {
    const problems: string[] = [];
    const items = expandLists({
      kind: 'List',
      items: [
        {
          kind: 'ClusterRole',
          metadata: { name: 'r' },
          rules: [
            { verbs: ['get'], nonResourceURLs: ['/x'] },
            { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
          ],
        },
        { kind: 'ConfigMap', metadata: { name: 'c' } },
        {
          kind: 'ClusterRoleBinding',
          metadata: { name: 'b' },
          roleRef: { kind: 'ClusterRole', name: 'r', apiGroup: 'rbac.authorization.k8s.io' },
          subjects: [{ kind: 'Group', name: 'g', apiGroup: 'rbac.authorization.k8s.io' }],
        },
      ],
    });
    const parsed = items.map((o) => parseRbacObject(o, 'test', problems));
    expect(problems).toEqual([]);
    expect(parsed[0]).toMatchObject({
      kind: 'ClusterRole',
      name: 'r',
      rules: [{ verbs: ['get'], nonResourceURLs: ['/x'] }],
    });
    expect(parsed[1]).toBe('ignored');
    expect(parsed[2]).toMatchObject({ kind: 'ClusterRoleBinding', roleRef: { name: 'r' } });
  });

  it.each([
    [{ kind: 'ClusterRole', metadata: {} }, 'without metadata.name'],
    [{ kind: 'ClusterRole', metadata: { name: 'r' }, rules: [{ verbs: 'get' }] }, 'must be lists of strings'],
    [
      { kind: 'ClusterRole', metadata: { name: 'r' }, rules: [{ verbs: ['get'], nonResourceURLs: ['~(('] }] },
      'not a regular expression',
    ],
    [{ kind: 'ClusterRoleBinding', metadata: { name: 'b' }, subjects: [] }, 'roleRef needs kind and name'],
    [
      {
        kind: 'ClusterRoleBinding',
        metadata: { name: 'b' },
        roleRef: { kind: 'ClusterRole', name: 'r' },
        subjects: [{ kind: 'User' }],
      },
      'every subject needs kind and name',
    ],
  ])('reports %o: %s', (obj, message) => {
    const problems: string[] = [];
    expect(parseRbacObject(obj, 'file.yaml', problems)).toBeUndefined();
    expect(problems.join('\n')).toContain(message);
  });
});

describe('the order: rules first, then RBAC, then default', () => {
  const NAMING = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: 'oidc:' };
  const dev = identityFromClaims(
    { sub: 's', email: 'dev@example.com', email_verified: true, groups: ['engineering'] },
    NAMING,
  );
  const noGroups = identityFromClaims({ sub: 's', email: 'x@example.com' }, NAMING);
  const policy: EvaluablePolicy = {
    defaultAllow: false,
    rules: [
      {
        index: 1,
        host: 'grafana.example.com',
        path: '/public',
        allow: { users: [], groups: ['system:authenticated'], emails: [], emailDomains: [] },
      },
    ],
    rbac: buildRbacIndex(objects),
  };
  const request = (path: string, method = 'GET') => ({
    method,
    scheme: 'https',
    host: 'grafana.example.com',
    path,
  });

  it.each([
    ['a matching rule decides before RBAC', noGroups, request('/public/x'), true],
    [
      'RBAC allows a bound group (the method lowercased is the verb)',
      dev,
      request('/grafana/x', 'HEAD'),
      true,
    ],
    ['RBAC refuses an unbound verb', dev, request('/grafana/x', 'PUT'), false],
    ['a missing groups claim: nothing bound', noGroups, request('/grafana/x'), false],
  ])('%s', (_name, identity, request, allowed) => {
    expect(evaluate(identity, request, policy).allowed).toBe(allowed);
  });

  it('an RBAC refusal names the bindings that would have allowed it', () => {
    expect(evaluate(noGroups, request('/grafana/x'), policy)).toMatchObject({
      allowed: false,
      source: 'rbac',
      wouldAllow: { groups: ['oidc:engineering'], users: ['alice@example.com'] },
    });
  });
});
