import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ConfigError, type KubeCluster, loadConfig } from '../../src/config.ts';
import { downloadName, kubeconfigYaml, kubeloginArgs } from '../../src/routes/kubeconfig.ts';

const BASE_ENV = {
  OIDC_ISSUER_URL: 'https://dex.example.com/dex',
  OIDC_CLIENT_ID: 'forward-auth',
  OIDC_CLIENT_SECRET: 'confidential-client-secret-value',
  COOKIE_SECRET: 'unit-test-cookie-secret-4f9a2c7e1b8d3056',
};

function clusters(list: unknown[], env: Record<string, string> = {}): readonly KubeCluster[] {
  return loadConfig({ ...BASE_ENV, ...env, KUBE_CLUSTERS: JSON.stringify(list) }).kubeClusters;
}

function problemsOf(list: unknown[], env: Record<string, string> = {}): string[] {
  try {
    clusters(list, env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

const CTX = { issuerUrl: 'https://dex.example.com/dex', user: 'alice@example.com', now: 0 };

describe('KUBE_CLUSTERS settings', () => {
  it('the API server audience defaults to the cross-client scope in OIDC_SCOPES, else to the cluster client', () => {
    const [withScope] = clusters([{ name: 'a', server: 'https://k8s.example.com', clientId: 'kubectl' }], {
      OIDC_SCOPES: 'openid email groups audience:server:client_id:kubernetes',
    });
    expect(withScope?.audience).toBe('kubernetes');
    const [plain] = clusters([{ name: 'a', server: 'https://k8s.example.com', clientId: 'kubectl' }]);
    expect(plain?.audience).toBe('kubectl');
    const [given] = clusters([{ name: 'a', server: 'https://k8s.example.com', audience: 'apiserver' }]);
    expect(given).toMatchObject({ clientId: 'forward-auth', audience: 'apiserver' });
  });

  it('a PEM CA given inline is stored base64-encoded, as kubeconfig wants it', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const [c] = clusters([{ name: 'a', server: 'https://k8s.example.com', caData: pem }]);
    expect(Buffer.from(c?.caData ?? '', 'base64').toString()).toBe(pem.trim());
  });

  it('a client secret is refused unless the client is declared public, and never the service own secret', () => {
    const notPublic = problemsOf([
      { name: 'a', server: 'https://k8s.example.com', clientSecret: 'shown-to-all' },
    ]);
    expect(notPublic.join('\n')).toMatch(/KUBE_CLUSTERS a: clientSecret .* public: true/);
    const own = problemsOf([
      {
        name: 'a',
        server: 'https://k8s.example.com',
        public: true,
        clientSecret: BASE_ENV.OIDC_CLIENT_SECRET,
      },
    ]);
    expect(own.join('\n')).toContain('must not be OIDC_CLIENT_SECRET');
    expect(own.join('\n')).not.toContain(BASE_ENV.OIDC_CLIENT_SECRET);
    const [ok] = clusters([
      { name: 'a', server: 'https://k8s.example.com', public: true, clientSecret: 'public' },
    ]);
    expect(ok?.clientSecret).toBe('public');
  });

  it('a misspelt field or a scope with spaces is reported, not silently ignored', () => {
    expect(problemsOf([{ name: 'a', server: 'https://k8s.example.com', clientID: 'x' }]).join()).toMatch(
      /KUBE_CLUSTERS/,
    );
    expect(
      problemsOf([{ name: 'a', server: 'https://k8s.example.com', extraScopes: ['email groups'] }]).join(),
    ).toMatch(/KUBE_CLUSTERS/);
  });
});

describe('kubeconfig generation', () => {
  const cluster: KubeCluster = {
    name: 'prod eu/1',
    server: 'https://k8s.example.com:6443',
    caData: 'Q0E=',
    clientId: 'kubectl',
    audience: 'kubernetes',
    extraScopes: ['openid', 'email', 'groups'],
  };

  it('kubelogin gets the issuer, the client, the scopes and the cross-client audience, and no secret', () => {
    expect(kubeloginArgs(cluster, CTX.issuerUrl)).toEqual([
      'oidc-login',
      'get-token',
      '--oidc-issuer-url=https://dex.example.com/dex',
      '--oidc-client-id=kubectl',
      '--oidc-extra-scope=email',
      '--oidc-extra-scope=groups',
      '--oidc-extra-scope=audience:server:client_id:kubernetes',
    ]);
    const own = kubeloginArgs({ ...cluster, audience: 'kubectl' }, CTX.issuerUrl);
    expect(own.some((a) => a.includes('audience:server'))).toBe(false);
    const publicClient = kubeloginArgs({ ...cluster, clientSecret: 'not-secret' }, CTX.issuerUrl);
    expect(publicClient).toContain('--oidc-client-secret=not-secret');
  });

  it('the exec-plugin kubeconfig is valid and holds no token', () => {
    const text = kubeconfigYaml([cluster], 'exec', { ...CTX, idToken: 'eyJ.secret.token', tokenExp: 1 });
    expect(text).not.toContain('eyJ.secret.token');
    const doc = parseYaml(text) as Record<string, unknown>;
    expect(doc).toMatchObject({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'prod eu/1', cluster: { server: cluster.server, 'certificate-authority-data': 'Q0E=' } },
      ],
      users: [
        {
          name: 'oidc@prod eu/1',
          user: {
            exec: {
              apiVersion: 'client.authentication.k8s.io/v1',
              command: 'kubectl',
              interactiveMode: 'Never',
            },
          },
        },
      ],
      contexts: [{ name: 'prod eu/1', context: { cluster: 'prod eu/1', user: 'oidc@prod eu/1' } }],
      'current-context': 'prod eu/1',
    });
  });

  it('the token kubeconfig carries the ID token and says when it expires', () => {
    const text = kubeconfigYaml([cluster], 'token', {
      ...CTX,
      idToken: 'eyJhbGciOiJSUzI1NiJ9.e30.sig',
      tokenExp: Date.UTC(2030, 0, 2, 3, 4, 5),
    });
    expect(text).toContain('EXPIRES at 2030-01-02T03:04:05.000Z');
    const doc = parseYaml(text) as { users: { user: { token: string } }[]; 'current-context': string };
    expect(doc.users[0]?.user.token).toBe('eyJhbGciOiJSUzI1NiJ9.e30.sig');
    expect(doc['current-context']).toBe('prod eu/1-token');
    expect(() => kubeconfigYaml([cluster], 'token', CTX)).toThrow();
  });

  it('a user name with a line break cannot break out of the YAML comment', () => {
    const text = kubeconfigYaml([cluster], 'token', {
      ...CTX,
      user: 'mallory\nusers: [evil]',
      idToken: 'a.b.c',
      tokenExp: 0,
    });
    const doc = parseYaml(text) as { users: { name: string }[] };
    expect(doc.users.map((u) => u.name)).toEqual(['token@prod eu/1']);
  });

  it('download file names are safe in a header and on every OS', () => {
    expect(downloadName(cluster, 'exec')).toBe('kubeconfig-prod_eu_1.yaml');
    expect(downloadName({ ...cluster, name: 'a"b\r\n;c' }, 'token')).toBe('kubeconfig-a_b_c-token.yaml');
    expect(downloadName(undefined, 'exec')).toBe('kubeconfig-all-clusters.yaml');
  });
});
