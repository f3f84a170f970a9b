import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EvaluablePolicy, evaluate } from '../../src/authz/evaluate.ts';
import { loadPolicy, type PolicySpec } from '../../src/authz/policyFile.ts';
import { buildRbacIndex } from '../../src/authz/rbac.ts';
import { type Identity, identityFromClaims } from '../../src/identity/claims.ts';

/**
 * Kubernetes' own RBAC objects (test/fixtures/kubernetes-bootstrap-rbac.yaml, as the API server
 * creates them) grant `system:authenticated` `get` on `/api/*`, `/apis/*`, `/version`, `/healthz`…
 * and `system:masters` everything. Those grants are for the API server's paths: they must never
 * open a dashboard. A role or binding opts in with the `dex-forward-auth/dashboards: "true"`
 * annotation.
 */

const BOOTSTRAP = new URL('../fixtures/kubernetes-bootstrap-rbac.yaml', import.meta.url);
const NAMING = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: 'oidc:' };

const CUSTOM = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: grafana-view }
rules: [{ verbs: [get], nonResourceURLs: ["/grafana/*"] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: grafana-view-engineering }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: grafana-view }
subjects: [{ kind: Group, name: "oidc:engineering" }]
---
# Everyone logged in may see /status: a binding to system:authenticated that opts in.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: public-status }
rules: [{ verbs: [get], nonResourceURLs: ["/status", "/status/*"] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: public-status-everyone
  annotations: { dex-forward-auth/dashboards: "true" }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: public-status }
subjects: [{ kind: Group, name: "system:authenticated" }]
---
# The same without the opt-in grants nothing.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: news }
rules: [{ verbs: [get], nonResourceURLs: ["/news"] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: news-everyone }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: news }
subjects: [{ kind: Group, name: "system:authenticated" }]
---
# A team bound to Kubernetes' own roles, for kubectl: that opens no dashboard.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: devs-view }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view }
subjects: [{ kind: Group, name: "oidc:engineering" }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: devs-discovery }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:discovery" }
subjects: [{ kind: Group, name: "oidc:engineering" }]
---
# An aggregated role that selects Kubernetes' own roles by their label gets none of their rules.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: sneaky }
aggregationRule:
  clusterRoleSelectors: [{ matchLabels: { kubernetes.io/bootstrapping: rbac-defaults } }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: sneaky-engineering }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: sneaky }
subjects: [{ kind: Group, name: "oidc:engineering" }]
---
# Opted out: this role is for the API server only, even bound to a team.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kube-metrics
  annotations: { dex-forward-auth/dashboards: "false" }
rules: [{ verbs: [get], nonResourceURLs: ["/grafana/metrics"] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: kube-metrics-ops }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-metrics }
subjects: [{ kind: Group, name: "oidc:ops" }]
`;

let dir: string;
let spec: PolicySpec;
let policy: EvaluablePolicy;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'authz-bootstrap-'));
  copyFileSync(BOOTSTRAP, join(dir, 'bootstrap.yaml'));
  writeFileSync(join(dir, 'custom.yaml'), CUSTOM);
  writeFileSync(join(dir, 'authz.yaml'), 'default: deny\nrbac:\n  files: ["*.yaml"]\n');
  const load = loadPolicy(join(dir, 'authz.yaml'));
  expect(load.problems).toEqual([]);
  spec = load.spec!;
  policy = {
    defaultAllow: spec.defaultAllow,
    rules: spec.rules,
    rbac: buildRbacIndex(spec.fileObjects),
  };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const who = (groups: string[], email = 'dev@example.com'): Identity =>
  identityFromClaims({ sub: 's', email, email_verified: true, groups }, NAMING);
const get = (identity: Identity, path: string, host = 'prometheus.example.com') =>
  evaluate(identity, { method: 'GET', scheme: 'https', host, path }, policy);

describe("Kubernetes' bootstrap RBAC (read from files) opens no dashboard", () => {
  it('reads the real bootstrap objects', () => {
    const names = spec.fileObjects.bindings.map((b) => b.name);
    expect(names).toEqual(
      expect.arrayContaining(['system:discovery', 'system:public-info-viewer', 'cluster-admin']),
    );
  });

  it.each([
    '/api',
    '/api/v1/query',
    '/apis/argoproj.io/v1alpha1',
    '/version',
    '/healthz',
    '/livez',
    '/readyz',
    '/openapi/v2',
    '/metrics',
    '/.well-known/openid-configuration',
  ])('a logged-in user is refused %s on a dashboard despite system:discovery and friends', (path) => {
    expect(get(who(['nobody']), path)).toMatchObject({ allowed: false, source: 'rbac' });
  });

  it('a group claim of system:masters is not cluster-admin here', () => {
    const mallory = who([], 'mallory@example.com');
    const claimed = identityFromClaims(
      { sub: 's', email: 'mallory@example.com', email_verified: true, groups: ['system:masters'] },
      { ...NAMING, groupsPrefix: '' },
    );
    for (const identity of [mallory, claimed]) {
      expect(get(identity, '/anything').allowed).toBe(false);
      expect(get(identity, '/api/v1/secrets', 'grafana.example.com').allowed).toBe(false);
    }
  });

  it("binding a team to Kubernetes' own roles (view, system:discovery) opens no dashboard", () => {
    expect(get(who(['engineering']), '/api/v1/query').allowed).toBe(false);
    expect(get(who(['engineering']), '/version').allowed).toBe(false);
  });

  it('an aggregated role cannot pull in the rules of bootstrap roles', () => {
    expect(get(who(['engineering']), '/admin').allowed).toBe(false);
  });

  it('ordinary bindings to oidc: groups still grant', () => {
    expect(get(who(['engineering']), '/grafana/d/1').allowed).toBe(true);
  });

  it('system:authenticated grants where the binding opts in, and only there', () => {
    expect(get(who(['nobody']), '/status/ok').allowed).toBe(true);
    expect(get(who(['nobody']), '/news').allowed).toBe(false);
  });

  it('a role annotated dex-forward-auth/dashboards: "false" grants nothing, even to a team', () => {
    expect(get(who(['ops']), '/grafana/metrics').allowed).toBe(false);
  });

  it('the denial page names only grants that would have counted', () => {
    const denied = get(who(['nobody']), '/grafana/d/1');
    expect(denied).toMatchObject({ allowed: false, wouldAllow: { groups: ['oidc:engineering'] } });
    const api = get(who(['nobody']), '/api/v1/query');
    expect(api).toMatchObject({ allowed: false, wouldAllow: { groups: [], users: [] } });
  });
});
