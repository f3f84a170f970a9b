import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Secret } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type Config, loadConfig } from '../../src/config.ts';
import { checkSettings } from '../../src/doctor/index.ts';
import { CookieNames } from '../../src/session/cookieNames.ts';
import {
  type Any,
  type ClusterData,
  find,
  findAll,
  KUBERNETES_DIR as kubernetesDir,
  kustomize,
  podConfig as loadPodConfig,
  type Obj,
  OVERLAYS,
  podView,
  renderOverlay as render,
  renderWith,
  schemaProblems,
  TEST_CLUSTER,
  TEST_CLUSTER_CA,
  unknownFields,
} from '../support/manifests.ts';
import { hasOpenssl, makeTestPki } from '../support/tls.ts';
import { parseRule } from '../support/traefik.ts';

/**
 * deploy/kubernetes: both overlays are built offline with `kubectl kustomize`, and every rendered
 * object is validated against the Kubernetes, Traefik CRD and Prometheus Operator schemas (the
 * kubernetes-models packages), plus a strict unknown-field check for core kinds (field names from
 * @kubernetes/client-node's models, as `kubectl apply --validate=strict` would). Then the
 * properties DESIGN §8 and the issue ask for are asserted on the rendered objects.
 */

/** kustomize builds can be made here (kubectl, else the fetched kustomize binary). */
const canBuild = kustomize().command !== undefined;
if (!canBuild) console.warn(`skipping the kustomize build tests: ${kustomize().reason}`);

/** An overlay with the decision-mtls component added, as an operator opting in would write it. */
const renderWithMtls = (overlay: string): Obj[] =>
  renderWith([`overlays/${overlay}`], ['components/decision-mtls']);

/** The service's configuration as the pod would load it: ConfigMap env, mounted Secret and ConfigMap files. */
const podConfig = (objs: Obj[], cluster: ClusterData = TEST_CLUSTER): Config =>
  loadPodConfig(podView(objs, cluster));

/** Identity headers beyond UPSTREAM_HEADERS that the regex strips (README: "Headers upstreams trust"). */
const IDENTITY_HEADERS = [
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
  'X-Auth-Request-Preferred-Username',
  'X-Auth-Request-Id-Token',
  'X-Forwarded-User',
  'X-Forwarded-Email',
  'X-Forwarded-Groups',
  'X-Forwarded-Preferred-Username',
  'Impersonate-User',
  'Impersonate-Group',
  'Impersonate-Uid',
  'Impersonate-Extra-Scopes',
];
const DECISION_PATHS = ['/auth', '/oauth2/auth'];
const BROWSER_PATHS = [
  '/oauth2/start',
  '/oauth2/callback',
  '/oauth2/sign_out',
  '/oauth2/userinfo',
  '/oauth2/sessions',
  '/kubeconfig',
  '/kubeconfig/download',
];

/**
 * Runs the Redis StatefulSet's configure.sh as its init container would, for pod `hostname`, with
 * redis-cli replaced by a stub whose answer to `sentinel get-master-addr-by-name` is `master`
 * ('' when no sentinel answers): the redis.conf and sentinel.conf it writes.
 */
function runConfigureScript(
  objs: Obj[],
  hostname: string,
  master: string,
): { redis: string; sentinel: string } {
  const sts = find(objs, 'StatefulSet', 'dex-forward-auth-redis');
  const init = sts.spec.template.spec.initContainers[0];
  const script = find(
    objs,
    'ConfigMap',
    sts.spec.template.spec.volumes.find((v: Any) => v.name === 'scripts').configMap.name,
  ).data['configure.sh'] as string;
  const dir = mkdtempSync(join(tmpdir(), 'redis-configure-'));
  try {
    writeFileSync(join(dir, 'configure.sh'), script);
    writeFileSync(join(dir, 'redis-cli'), `#!/bin/sh\nprintf '%s\\n' '${master}'\n`, { mode: 0o755 });
    const env: Record<string, string> = {
      PATH: `${dir}:${process.env['PATH']}`,
      HOSTNAME: hostname,
      CONF_DIR: dir,
    };
    for (const e of init.env as Any[]) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace')
        env[e.name] = sts.metadata.namespace;
      else if (e.valueFrom?.secretKeyRef) {
        const ref = e.valueFrom.secretKeyRef;
        env[e.name] = TEST_CLUSTER.secrets?.[ref.name]?.[ref.key] as string;
      }
    }
    const run = spawnSync('sh', [join(dir, 'configure.sh')], { env, encoding: 'utf8', timeout: 20_000 });
    if (run.status !== 0) throw new Error(`configure.sh failed: ${run.stderr}`);
    return {
      redis: readFileSync(join(dir, 'redis.conf'), 'utf8'),
      sentinel: readFileSync(join(dir, 'sentinel.conf'), 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!canBuild).each(OVERLAYS)('the %s overlay', (overlay) => {
  let objs: Obj[];
  beforeAll(() => {
    objs = render(overlay);
  });

  it('builds offline with kubectl kustomize and contains every part of the deployment', () => {
    const kinds = objs.map((o) => o.kind);
    for (const kind of [
      'Namespace',
      'ServiceAccount',
      'ConfigMap',
      'Service',
      'Deployment',
      'StatefulSet',
      'PodDisruptionBudget',
      'HorizontalPodAutoscaler',
      'NetworkPolicy',
      'ServiceMonitor',
      'Middleware',
      'IngressRoute',
    ]) {
      expect(kinds, kind).toContain(kind);
    }
    expect(findAll(objs, 'Secret')).toEqual([]);
  });

  it('every object validates against its Kubernetes, Traefik or Prometheus Operator schema, without unknown fields', () => {
    expect(schemaProblems(objs)).toEqual([]);
  });

  it('its settings, with the secrets mounted as files, are a valid configuration without problems doctor would report', () => {
    const config = podConfig(objs);
    expect(config.redis).toMatchObject({ mode: 'sentinel' });
    expect(checkSettings(config).filter((c) => c.status === 'problem')).toEqual([]);
    expect(config.redirectUrl).toMatch(/^https:\/\//);
    expect(config.scopes).toContain('audience:server:client_id:kubernetes');
  });

  it('runs 3 replicas spread across nodes, non-root with a read-only root filesystem, no privilege escalation and seccomp', () => {
    const d = find(objs, 'Deployment', 'dex-forward-auth');
    const pod = d.spec.template.spec;
    expect(d.spec.replicas).toBe(3);
    expect(d.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    const spread = pod.topologySpreadConstraints.find((t: Any) => t.topologyKey === 'kubernetes.io/hostname');
    expect(spread).toMatchObject({ maxSkew: 1, whenUnsatisfiable: 'DoNotSchedule' });
    expect(spread.labelSelector.matchLabels).toEqual(d.spec.selector.matchLabels);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const c of pod.containers) {
      expect(c.securityContext, c.name).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        runAsNonRoot: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.resources.requests).toMatchObject({ cpu: expect.anything(), memory: expect.anything() });
      expect(c.resources.limits.memory).toBeTruthy();
      expect(c.image).toMatch(/^[\w.-]+(\/[\w.-]+)+:[\w.-]+$/);
    }
  });

  it('probes liveness on /healthz and readiness on /readyz (which never fails because Dex or Redis is away)', () => {
    const c = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec.containers[0];
    expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    expect(c.ports).toEqual([
      { name: 'http', containerPort: 4180, protocol: 'TCP' },
      { name: 'auth', containerPort: 4181, protocol: 'TCP' },
    ]);
    expect(c.lifecycle.preStop).toBeDefined();
  });

  it('passes secrets only as files (*_FILE) from keys the example Secret provides', () => {
    const pod = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec;
    const c = pod.containers[0];
    const volume = pod.volumes.find((v: Any) => v.name === 'secrets');
    const mount = c.volumeMounts.find((m: Any) => m.name === 'secrets');
    expect(mount.readOnly).toBe(true);
    const example = parseYaml(readFileSync(`${kubernetesDir}/base/secret.example.yaml`, 'utf8')) as Obj & {
      stringData: Record<string, string>;
    };
    new Secret(example as Any).validate();
    expect(volume.secret.secretName).toBe(example.metadata.name);
    for (const e of c.env as { name: string; value?: string; valueFrom?: unknown }[]) {
      expect(e.name).not.toMatch(/SECRET$|PASSWORD$|SECRETS$/);
      // Every secret is a file of the secrets mount (CONFIG_FILE names a ConfigMap's file instead).
      if (/(SECRET|SECRETS|PASSWORD)_FILE$/.test(e.name)) expect(e.value).toMatch(`${mount.mountPath}/`);
      if (!e.name.endsWith('_FILE') || !e.value?.startsWith(`${mount.mountPath}/`)) continue;
      const file = (e.value as string).slice(mount.mountPath.length + 1);
      expect(
        volume.secret.items.map((i: Any) => i.path),
        e.name,
      ).toContain(file);
      expect(Object.keys(example.stringData), e.name).toContain(
        volume.secret.items.find((i: Any) => i.path === file).key,
      );
    }
    // The example's placeholders are refused by the service, so it cannot run with them.
    const deployment = find(objs, 'Deployment', 'dex-forward-auth');
    const data = find(objs, 'ConfigMap', c.envFrom[0].configMapRef.name).data;
    expect(() =>
      loadConfig({ ...data, COOKIE_SECRETS: example.stringData['cookie-secrets'] as string }),
    ).toThrow(/COOKIE_SECRETS/);
    expect(deployment).toBeDefined();
  });

  it('the Middleware returns every upstream header, the session cookie, strips every identity header, keeps auth requests small, passes the entry point forwarded headers and the origin headers sign-out needs', () => {
    const config = podConfig(objs);
    const fa = find(objs, 'Middleware', 'dex-forward-auth').spec.forwardAuth;
    expect(fa.trustForwardHeader).toBe(true);
    expect(fa.authRequestHeaders).toEqual(expect.arrayContaining(['Origin', 'Sec-Fetch-Site']));
    expect(new Set(fa.authResponseHeaders)).toEqual(new Set(config.upstreamHeaders));
    expect(fa.addAuthCookiesToResponse).toContain(new CookieNames(config).session);
    // Go RE2 against Go-canonical names; a leading (?i) as Traefik reads it.
    const source = fa.authResponseHeadersRegex as string;
    const regex = source.startsWith('(?i)') ? new RegExp(source.slice(4), 'i') : new RegExp(source);
    for (const h of IDENTITY_HEADERS) expect(regex.test(h), h).toBe(true);
    for (const h of ['X_auth_request_user', 'Impersonate_user']) expect(regex.test(h), h).toBe(true);
    for (const h of [
      'Cookie',
      'X-Forwarded-For',
      'X-Forwarded-Host',
      'X-Forwarded-Proto',
      'X-Forwarded-Uri',
    ]) {
      expect(regex.test(h), h).toBe(false);
    }
    expect(fa.authRequestHeaders).toEqual(
      expect.arrayContaining([
        'Cookie',
        'Authorization',
        'Accept',
        'Sec-Fetch-Mode',
        'Sec-Fetch-Dest',
        'X-Requested-With',
      ]),
    );
    const address = new URL(fa.address);
    const service = find(objs, 'Service', 'dex-forward-auth');
    expect(address.hostname).toBe(`${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`);
    const auth = service.spec.ports.find((p: Any) => p.name === 'auth');
    expect(Number(address.port)).toBe(auth.port);
    expect(address.pathname).toBe('/auth');
  });

  it('serves the decisions on their own port (AUTH_PORT), which the Middleware uses and no IngressRoute reaches', () => {
    const config = podConfig(objs);
    const service = find(objs, 'Service', 'dex-forward-auth');
    const byName = Object.fromEntries(service.spec.ports.map((p: Any) => [p.name, p]));
    const container = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec.containers[0];
    const containerPort = (name: string) => container.ports.find((p: Any) => p.name === name).containerPort;
    expect(config.decisionListener?.port).toBe(containerPort('auth'));
    expect(config.port).toBe(containerPort('http'));
    expect(byName.auth.targetPort).toBe('auth');
    for (const route of findAll(objs, 'IngressRoute').flatMap((r: Any) => r.spec.routes)) {
      for (const s of route.services) {
        if (s.name === 'dex-forward-auth') expect(s.port, route.match).toBe(byName.http.port);
      }
    }
  });

  it('routes only the browser endpoints to the service: no IngressRoute matches /auth or /oauth2/auth', () => {
    const routes = findAll(objs, 'IngressRoute').flatMap((r: Any) => r.spec.routes);
    const direct = routes.filter((r: Any) => r.services.some((s: Any) => s.name === 'dex-forward-auth'));
    expect(direct.length).toBeGreaterThan(0);
    for (const route of direct) {
      const matches = parseRule(route.match);
      const host = /Host\(`([^`]+)`\)/.exec(route.match)?.[1] as string;
      for (const path of DECISION_PATHS) expect(matches(host, path), `${route.match} ${path}`).toBe(false);
      for (const path of BROWSER_PATHS) expect(matches(host, path), `${route.match} ${path}`).toBe(true);
    }
  });

  it('names the proxies it trusts (TRUSTED_PROXIES) explicitly, not the loopback-only default', () => {
    const data = find(
      objs,
      'ConfigMap',
      find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec.containers[0].envFrom[0].configMapRef
        .name,
    ).data;
    expect(data.TRUSTED_PROXIES).toMatch(/^\d+\.\d+\.\d+\.\d+\/\d+/);
    const trusted = podConfig(objs).trustedProxies;
    expect(trusted.some((r) => r.startsWith('127.') || r === '::1/128')).toBe(false);
    const comment = readFileSync(`${kubernetesDir}/base/settings.env`, 'utf8');
    expect(comment).toMatch(/kubectl .*get pods -o wide/);
  });

  it('names resolve: Service, PDB, HPA, ServiceMonitor and IngressRoutes point at what exists', () => {
    const d = find(objs, 'Deployment', 'dex-forward-auth');
    const podLabels = d.spec.template.metadata.labels;
    const selects = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => podLabels[k] === v);
    const service = find(objs, 'Service', 'dex-forward-auth');
    expect(selects(service.spec.selector)).toBe(true);
    expect(service.spec.ports[0].targetPort).toBe('http');
    expect(selects(find(objs, 'PodDisruptionBudget', 'dex-forward-auth').spec.selector.matchLabels)).toBe(
      true,
    );
    const hpa = find(objs, 'HorizontalPodAutoscaler', 'dex-forward-auth');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: d.metadata.name });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(3);
    const sm = find(objs, 'ServiceMonitor', 'dex-forward-auth');
    expect(
      Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => service.metadata.labels[k] === v),
    ).toBe(true);
    expect(sm.spec.endpoints[0]).toMatchObject({ port: 'http', path: '/metrics' });
    expect(find(objs, 'ServiceAccount', d.spec.template.spec.serviceAccountName)).toBeDefined();
    expect(
      find(objs, 'ConfigMap', d.spec.template.spec.containers[0].envFrom[0].configMapRef.name),
    ).toBeDefined();

    const middleware = find(objs, 'Middleware', 'dex-forward-auth');
    const routes = findAll(objs, 'IngressRoute').flatMap((r: Any) =>
      r.spec.routes.map((route: Any) => ({ ...route, namespace: r.metadata.namespace })),
    );
    expect(routes.some((r: Any) => r.middlewares?.length)).toBe(true);
    for (const r of routes) {
      for (const m of r.middlewares ?? []) {
        expect(m).toEqual({ name: middleware.metadata.name, namespace: middleware.metadata.namespace });
      }
      for (const s of r.services) {
        if (s.name !== 'dex-forward-auth') continue;
        expect(s.namespace ?? r.namespace).toBe(service.metadata.namespace);
        expect(s.port).toBe(service.spec.ports[0].port);
      }
    }
  });

  it('ships the Kubernetes Dashboard route with token passthrough through the middleware', () => {
    const route = find(objs, 'IngressRoute', 'kubernetes-dashboard');
    const r = route.spec.routes[0];
    expect(r.middlewares).toEqual([{ name: 'dex-forward-auth', namespace: 'auth' }]);
    expect(r.services[0].name).toMatch(/kubernetes-dashboard/);
    // The API server must accept the forwarded ID token: its audience is requested.
    expect(podConfig(objs).scopes).toContain('audience:server:client_id:kubernetes');
  });

  it('ships Headlamp beside the Dashboard: its chart Service behind the middleware, with the token the API server accepts', () => {
    const route = find(objs, 'IngressRoute', 'headlamp');
    expect(route.metadata.namespace).toBe('headlamp');
    expect(route.spec.routes).toHaveLength(1);
    const r = route.spec.routes[0];
    expect(
      parseRule(r.match)(
        `headlamp.${overlay === 'management' ? 'mgmt' : 'cluster-a'}.example.com`,
        '/c/main',
      ),
    ).toBe(true);
    expect(r.middlewares).toEqual([{ name: 'dex-forward-auth', namespace: 'auth' }]);
    expect(r.services).toEqual([{ name: 'headlamp', port: 80 }]);
    const config = podConfig(objs);
    expect(config.upstreamHeaders).toContain('Authorization');
    expect(config.scopes).toContain('audience:server:client_id:kubernetes');
  });

  it('gives the central auth host its root page as well as the browser endpoints', () => {
    const route = find(objs, 'IngressRoute', 'dex-forward-auth').spec.routes[0];
    const host = /Host\(`([^`]+)`\)/.exec(route.match)?.[1] as string;
    expect(podConfig(objs).redirectUrl).toBe(`https://${host}/oauth2/callback`);
    expect(parseRule(route.match)(host, '/')).toBe(true);
    expect(parseRule(route.match)(host, '/metrics')).toBe(false);
  });

  it('offers a kubeconfig for the cluster it runs in (KUBE_CLUSTERS), with the CA Kubernetes publishes as kube-root-ca.crt', () => {
    const clusters = podConfig(objs).kubeClusters;
    expect(clusters).toHaveLength(1);
    expect(clusters[0]).toMatchObject({
      name: overlay === 'management' ? 'mgmt' : 'cluster-a',
      server: expect.stringMatching(/^https:\/\/k8s\.[\w.-]+:6443$/),
      clientId: 'kubectl',
      audience: 'kubernetes',
      caData: Buffer.from(TEST_CLUSTER_CA).toString('base64'),
    });
    expect(clusters[0]?.clientSecret).toBeUndefined();
  });

  it('mounts only ConfigMaps and Secrets that exist beside the Deployment or that the cluster provides', () => {
    // kube-root-ca.crt is in every namespace; the Secret is created first (README). A generated
    // ConfigMap in another namespace than the Deployment would leave the pod waiting for it.
    expect(() => podView(objs, TEST_CLUSTER)).not.toThrow();
    expect(() => podView(objs, { secrets: TEST_CLUSTER.secrets })).toThrow(/kube-root-ca\.crt/);
  });

  it('lets only Traefik reach the decisions, Traefik and Prometheus the pages, and only the service reach Redis', () => {
    const np = find(objs, 'NetworkPolicy', 'dex-forward-auth');
    const d = find(objs, 'Deployment', 'dex-forward-auth');
    expect(np.spec.podSelector.matchLabels).toEqual(d.spec.selector.matchLabels);
    expect(np.spec.policyTypes).toContain('Ingress');
    const sources = np.spec.ingress.flatMap((rule: Any) => rule.from);
    expect(sources.length).toBeGreaterThan(0);
    for (const from of sources) {
      expect(from.namespaceSelector, 'every source names its namespace').toBeDefined();
      expect(from.podSelector, 'and its pods').toBeDefined();
    }
    expect(sources.some((f: Any) => f.podSelector.matchLabels['app.kubernetes.io/name'] === 'traefik')).toBe(
      true,
    );
    // The decision port only from Traefik; the pages port from Traefik and Prometheus.
    for (const rule of np.spec.ingress) {
      const names = rule.from.map((f: Any) => f.podSelector.matchLabels['app.kubernetes.io/name']);
      const ports = rule.ports.map((p: Any) => p.port);
      if (ports.includes('auth')) expect(names).toEqual(['traefik']);
      for (const port of ports) expect(['http', 'auth']).toContain(port);
    }
    const reachAuth = np.spec.ingress.filter((rule: Any) => rule.ports.some((p: Any) => p.port === 'auth'));
    expect(reachAuth.length).toBe(1);

    const redisNp = find(objs, 'NetworkPolicy', 'dex-forward-auth-redis');
    const redisSources = redisNp.spec.ingress.flatMap((rule: Any) => rule.from);
    for (const from of redisSources) {
      expect(from.namespaceSelector).toBeUndefined();
      expect(['dex-forward-auth', 'dex-forward-auth-redis']).toContain(
        from.podSelector.matchLabels['app.kubernetes.io/name'],
      );
    }
  });

  it('runs Redis with Sentinel: 3 pods spread across nodes, quorum 2, and the service names every sentinel', () => {
    const sts = find(objs, 'StatefulSet', 'dex-forward-auth-redis');
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.template.spec.topologySpreadConstraints[0]).toMatchObject({
      topologyKey: 'kubernetes.io/hostname',
    });
    const headless = find(objs, 'Service', sts.spec.serviceName);
    expect(headless.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    expect(sts.spec.template.spec.containers.map((c: Any) => c.name).sort()).toEqual(['redis', 'sentinel']);
    const config = podConfig(objs);
    if (config.redis?.mode !== 'sentinel') throw new Error('sentinel mode expected');
    // The init container's script, run as on pod 0's first start: it monitors the master the
    // service asks for (REDIS_SENTINEL_NAME) with quorum 2, and pod 0 starts as the master.
    const first = runConfigureScript(objs, 'dex-forward-auth-redis-0', '');
    expect(first.sentinel).toContain(
      `sentinel monitor ${config.redis.name} dex-forward-auth-redis-0.dex-forward-auth-redis.auth.svc.cluster.local 6379 2`,
    );
    expect(first.redis).not.toContain('replicaof');
    expect(first.redis).toContain(
      `requirepass ${TEST_CLUSTER.secrets?.['dex-forward-auth']?.['redis-password']}`,
    );
    // A pod restarting while the sentinels name another master replicates from it.
    const later = runConfigureScript(objs, 'dex-forward-auth-redis-2', 'dex-forward-auth-redis-1.x');
    expect(later.redis).toContain('replicaof dex-forward-auth-redis-1.x 6379');
    expect(later.sentinel).toContain(
      `sentinel monitor ${config.redis.name} dex-forward-auth-redis-1.x 6379 2`,
    );
    const ns = sts.metadata.namespace;
    expect(config.redis.sentinels).toEqual(
      [0, 1, 2].map((i) => ({
        host: `${sts.metadata.name}-${i}.${headless.metadata.name}.${ns}.svc.cluster.local`,
        port: 26379,
      })),
    );
    expect(find(objs, 'PodDisruptionBudget', 'dex-forward-auth-redis').spec.maxUnavailable).toBe(1);
  });
});

describe.skipIf(!canBuild).each(OVERLAYS)('the %s overlay with the decision-mtls component', (overlay) => {
  let objs: Obj[];
  beforeAll(() => {
    objs = renderWithMtls(overlay);
  });

  it('validates against the Kubernetes, Traefik and cert-manager schemas', () => {
    expect(schemaProblems(objs)).toEqual([]);
  });

  it('makes Traefik ask the decision port over mutual TLS with certificates of one private CA', () => {
    const fa = find(objs, 'Middleware', 'dex-forward-auth').spec.forwardAuth;
    const address = new URL(fa.address);
    expect(address.protocol).toBe('https:');
    const service = find(objs, 'Service', 'dex-forward-auth');
    expect(Number(address.port)).toBe(service.spec.ports.find((p: Any) => p.name === 'auth').port);
    const certificates = findAll(objs, 'Certificate');
    const bySecret = (name: string) => certificates.find((c: Any) => c.spec.secretName === name);
    const server = bySecret(fa.tls.caSecret);
    const client = bySecret(fa.tls.certSecret);
    expect(server.spec.dnsNames).toContain(address.hostname);
    expect(server.spec.usages).toEqual(['server auth']);
    expect(client.spec.usages).toEqual(['client auth']);
    expect(client.spec.issuerRef).toEqual(server.spec.issuerRef);
    const issuer = find(objs, 'Issuer', server.spec.issuerRef.name);
    expect(bySecret(issuer.spec.ca.secretName).spec.isCA).toBe(true);
  });

  it.skipIf(!hasOpenssl())(
    'mounts the server certificate where AUTH_TLS_* point, as a valid configuration',
    async () => {
      const pod = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec;
      const container = pod.containers[0];
      const fa = find(objs, 'Middleware', 'dex-forward-auth').spec.forwardAuth;
      const volume = pod.volumes.find((v: Any) => v.secret?.secretName === fa.tls.caSecret);
      const mount = container.volumeMounts.find((m: Any) => m.name === volume.name);
      expect(mount.subPath).toBeUndefined(); // renewed files must appear in place
      const envOf = (name: string) => container.env.find((e: Any) => e.name === name).value as string;
      const dir = mkdtempSync(join(tmpdir(), 'mtls-pki-'));
      try {
        const pki = makeTestPki(dir);
        // The Secret cert-manager writes for the server Certificate: tls.crt, tls.key, ca.crt.
        const issued = {
          'tls.crt': readFileSync(pki.serverCert, 'utf8'),
          'tls.key': readFileSync(pki.serverKey, 'utf8'),
          'ca.crt': readFileSync(pki.caCert, 'utf8'),
        };
        const cluster = { ...TEST_CLUSTER, secrets: { ...TEST_CLUSTER.secrets, [fa.tls.caSecret]: issued } };
        for (const name of ['AUTH_TLS_CERT_FILE', 'AUTH_TLS_KEY_FILE', 'AUTH_TLS_CLIENT_CA_FILE']) {
          expect(envOf(name).startsWith(`${mount.mountPath}/`)).toBe(true);
        }
        const config = podConfig(objs, cluster);
        expect(config.decisionListener?.tls?.clientCaFile).toBe(envOf('AUTH_TLS_CLIENT_CA_FILE'));
        expect(podView(objs, cluster).files.get(envOf('AUTH_TLS_CLIENT_CA_FILE'))).toBe(issued['ca.crt']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe.skipIf(!canBuild).each(OVERLAYS)('the %s overlay with the admin-api component', (overlay) => {
  let objs: Obj[];
  beforeAll(() => {
    objs = renderWith([`overlays/${overlay}`], ['components/admin-api']);
  });
  const TOKEN = 'an-admin-token-from-openssl-rand-base64-32=';

  it('validates against the schemas', () => {
    expect(schemaProblems(objs)).toEqual([]);
  });

  it('opens the admin port in the pod only: in no Service, IngressRoute or NetworkPolicy rule', () => {
    const container = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec.containers[0];
    const admin = container.ports.find((p: Any) => p.name === 'admin');
    expect(admin.containerPort).toBe(4182);
    for (const service of findAll(objs, 'Service')) {
      for (const port of service.spec.ports) {
        expect([port.targetPort, port.port]).not.toContain('admin');
        expect([port.targetPort, port.port]).not.toContain(4182);
      }
    }
    for (const policy of findAll(objs, 'NetworkPolicy')) {
      const ports = (policy.spec.ingress ?? [])
        .flatMap((rule: Any) => rule.ports ?? [])
        .map((p: Any) => p.port);
      expect(ports).not.toContain('admin');
      expect(ports).not.toContain(4182);
    }
    expect(JSON.stringify(findAll(objs, 'IngressRoute'))).not.toContain('4182');
  });

  it('reads the token from the Secret dex-forward-auth-admin, as a valid configuration', () => {
    const cluster = {
      ...TEST_CLUSTER,
      secrets: { ...TEST_CLUSTER.secrets, 'dex-forward-auth-admin': { token: TOKEN } },
    };
    const config = podConfig(objs, cluster);
    expect(config.adminListener?.port).toBe(4182);
    expect(podView(objs, cluster).files.get(config.adminListener!.tokenFile!)).toBe(TOKEN);
    const pod = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec;
    const mount = pod.containers[0].volumeMounts.find((m: Any) => m.name === 'admin-token');
    expect(mount.subPath).toBeUndefined(); // a rotated token must appear in place
  });
});

describe('the Redis configuration script', () => {
  it('is valid POSIX sh', () => {
    const result = spawnSync('sh', ['-n', `${kubernetesDir}/base/redis/configure.sh`], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});

describe('the strict field check', () => {
  it('finds a misspelt field that the schema validators let through', () => {
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'x' },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: {
          metadata: { labels: { a: 'b' } },
          spec: {
            containers: [{ name: 'c', image: 'i:1', securityContext: { readOnlyRootFileSystem: true } }],
          },
        },
      },
    };
    new Deployment(deployment as Any).validate();
    expect(unknownFields(deployment, 'V1Deployment')).toEqual([
      '.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem',
    ]);
  });
});

describe.skipIf(!canBuild)('the README walk-through "Deploy on Kubernetes behind Traefik"', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(
    readme.indexOf('## Deploy on Kubernetes behind Traefik'),
    readme.indexOf('\n## ', readme.indexOf('## Deploy on Kubernetes behind Traefik') + 5),
  );
  const staticClients = (): Any[] => {
    const block = /```yaml\n(staticClients:\n[\s\S]*?)```/.exec(section);
    if (!block) throw new Error('no staticClients block');
    return parseYaml(block[1] as string).staticClients;
  };

  it.each(OVERLAYS)(
    'registers in Dex the %s overlay’s client with its callback, and the API server’s client trusts it and kubectl',
    (overlay) => {
      const config = podConfig(render(overlay));
      const clients = staticClients();
      const own = clients.find((c) => c.id === config.clientId);
      expect(own?.redirectURIs).toContain(config.redirectUrl);
      expect(own?.public).toBeUndefined();
      const audience = config.scopes
        .find((s) => s.startsWith('audience:server:client_id:'))
        ?.split(':')
        .at(-1);
      const apiServer = clients.find((c) => c.id === audience);
      expect(apiServer?.trustedPeers).toContain(config.clientId);
      for (const cluster of config.kubeClusters) {
        expect(cluster.audience).toBe(audience);
        expect(apiServer?.trustedPeers).toContain(cluster.clientId);
        const kubectl = clients.find((c) => c.id === cluster.clientId);
        expect(kubectl).toMatchObject({ public: true });
        expect(kubectl?.redirectURIs).toEqual(['http://localhost:8000', 'http://localhost:18000']);
      }
    },
  );

  it('creates the Secret with exactly the keys the example lists, and runs doctor the way the image starts the CLI', () => {
    const example = parseYaml(readFileSync(`${kubernetesDir}/base/secret.example.yaml`, 'utf8')) as Any;
    const created =
      /kubectl -n auth create secret generic dex-forward-auth \\\n((?:\s+--from-literal=.*\n)+)/.exec(
        section,
      );
    const keys = [...(created?.[1] ?? '').matchAll(/--from-literal=([\w-]+)=/g)].map((m) => m[1]);
    expect(keys.sort()).toEqual(Object.keys(example.stringData).sort());
    // Dockerfile: ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=8", "dist/src/cli.js"]
    const dockerfile = readFileSync(`${kubernetesDir}/../Dockerfile`, 'utf8');
    const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1] as string) as string[];
    const doctor = /kubectl -n auth exec deploy\/dex-forward-auth -- (\S+) (\S+) doctor/.exec(section);
    expect(doctor?.[1]).toBe(entrypoint[0]);
    expect(doctor?.[2]).toBe(entrypoint.at(-1));
    // --host names the management overlay's protected hosts.
    const hosts = findAll(render('management'), 'IngressRoute')
      .flatMap((ir) => ir.spec.routes as Any[])
      .filter((r) => (r.middlewares ?? []).length > 0)
      .map((r) => /Host\(`([^`]+)`\)/.exec(r.match)?.[1]);
    for (const host of hosts) expect(section).toContain(`--host ${host}`);
  });
});
