import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PolicyAuthorizer } from '../../src/authz/authorizer.ts';
import { watchClusterRbac } from '../../src/authz/kubeWatch.ts';
import { AppError } from '../../src/errors.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger } from '../../src/log.ts';
import { type KubeApi, startKubeApi } from '../support/kubeApi.ts';
import { LogCapture } from '../support/service.ts';

/**
 * `rbac.kubernetes: true`: ClusterRoles and ClusterRoleBindings watched live with
 * @kubernetes/client-node. The cluster here is test/support/kubeApi.ts — a minimal local HTTP server
 * speaking the Kubernetes list/watch protocol for those two kinds, clearly a stand-in, not Kubernetes.
 */

const NAMING = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: 'oidc:' };
const dev = identityFromClaims(
  { sub: 'd', email: 'dev@example.com', email_verified: true, groups: ['engineering'] },
  NAMING,
);
const get = (path: string) => ({ method: 'GET', proto: 'https', host: 'grafana.example.com', path });

const role = {
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRole',
  metadata: { name: 'grafana-view', labels: { team: 'obs' } },
  rules: [{ verbs: ['get'], nonResourceURLs: ['/grafana/*'] }],
};
const binding = {
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRoleBinding',
  metadata: { name: 'grafana-view-engineering' },
  roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'grafana-view' },
  subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'oidc:engineering' }],
};

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function allowed(a: PolicyAuthorizer, path: string): boolean | 'unavailable' {
  try {
    return a.decide(dev, get(path)).allowed;
  } catch (error) {
    if (error instanceof AppError && error.code === 'policy_unavailable') return 'unavailable';
    throw error;
  }
}

describe('RBAC objects watched from the cluster (Kubernetes API stand-in)', () => {
  let kube: KubeApi;
  let dir: string;
  let authorizer: PolicyAuthorizer | undefined;
  let logs: LogCapture;
  const reloads: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'authz-kube-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await authorizer?.close();
    authorizer = undefined;
    await kube?.close();
  });

  function start(kubeconfigPath: string, policy = 'rbac: { kubernetes: true }\n'): PolicyAuthorizer {
    logs = new LogCapture();
    reloads.length = 0;
    const path = join(dir, 'authz.yaml');
    writeFileSync(path, policy);
    authorizer = new PolicyAuthorizer({
      path,
      log: createLogger({ level: 'debug', destination: logs }),
      kubeconfigPath,
      events: { reload: (source, result) => reloads.push(`${source}:${result}`) },
      watchKubernetes: (options) => watchClusterRbac({ ...options, backoffMs: 50 }),
    });
    return authorizer;
  }

  it('lists, then follows additions, changes and deletions as they happen', async () => {
    kube = await startKubeApi({ objects: [role] });
    const a = start(kube.writeKubeconfig(dir));
    await until(() => allowed(a, '/grafana/x') !== 'unavailable', 'the first sync');
    expect(allowed(a, '/grafana/x')).toBe(false);
    expect(kube.requests.every((r) => r.authorization === `Bearer ${kube.token}`)).toBe(true);
    expect(
      kube.requests
        .filter((r) => !r.watch)
        .map((r) => r.resource)
        .sort(),
    ).toEqual(['clusterrolebindings', 'clusterroles']);

    kube.apply(binding);
    await until(() => allowed(a, '/grafana/x') === true, 'the new binding');

    kube.apply({ ...role, rules: [{ verbs: ['get'], nonResourceURLs: ['/other/*'] }] });
    await until(() => allowed(a, '/grafana/x') === false, 'the changed role');
    expect(allowed(a, '/other/y')).toBe(true);

    kube.remove('ClusterRoleBinding', 'grafana-view-engineering');
    await until(() => allowed(a, '/other/y') === false, 'the deleted binding');
    expect(reloads.filter((r) => r === 'kubernetes:ok').length).toBeGreaterThanOrEqual(4);
    expect(a.status()).toMatchObject({
      rbac: { kubernetes: 'synced', clusterRoles: 1, clusterRoleBindings: 0 },
    });
  });

  it('answers 503 (not a denial) until the first list succeeds, then recovers by itself', async () => {
    kube = await startKubeApi({ objects: [role, binding] });
    kube.failNextLists(3, 403);
    const a = start(kube.writeKubeconfig(dir));
    expect(allowed(a, '/grafana/x')).toBe('unavailable');
    await until(() => reloads.includes('kubernetes:error'), 'the error to be reported');
    expect(logs.text).toContain('list and watch on clusterroles and clusterrolebindings');
    await until(() => allowed(a, '/grafana/x') === true, 'recovery');
  });

  it('rules that match still decide while the cluster is unreachable', async () => {
    kube = await startKubeApi({ objects: [role, binding] });
    kube.failNextLists(1_000, 500);
    const a = start(
      kube.writeKubeconfig(dir),
      'rules:\n  - path: /public\n    allow: { groups: [system:authenticated] }\nrbac: { kubernetes: true }\n',
    );
    expect(allowed(a, '/public/page')).toBe(true);
    expect(allowed(a, '/grafana/x')).toBe('unavailable');
  });

  it('resumes the watch after the server closes it, without losing changes', async () => {
    kube = await startKubeApi({ objects: [role] });
    const a = start(kube.writeKubeconfig(dir));
    await until(() => kube.watchers === 2, 'both watches');
    kube.dropWatches();
    kube.apply(binding);
    await until(() => allowed(a, '/grafana/x') === true, 'the change made while the watch was down');
  });

  it('refuses a policy asking for the cluster when there is none to talk to', () => {
    const path = join(dir, 'authz.yaml');
    writeFileSync(path, 'rbac: { kubernetes: true }\n');
    expect(
      () =>
        new PolicyAuthorizer({
          path,
          log: createLogger({ level: 'silent', destination: new LogCapture() }),
          kubeconfigPath: join(dir, 'missing-kubeconfig.yaml'),
        }),
    ).toThrow(/rbac\.kubernetes/);
  });
});
