import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { Certificate, Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { IngressRoute, Middleware, ServersTransport } from '@kubernetes-models/traefik/traefik.io/v1alpha1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { type Config, loadConfig } from '../../src/config.ts';
import { checkSettings } from '../../src/doctor/index.ts';
import { CookieNames } from '../../src/session/cookieNames.ts';
import { hasOpenssl, makeTestPki } from '../support/tls.ts';
import { parseRule } from '../support/traefik.ts';

/**
 * deploy/kubernetes: both overlays are built offline with `kubectl kustomize`, and every rendered
 * object is validated against the Kubernetes, Traefik CRD and Prometheus Operator schemas (the
 * kubernetes-models packages), plus a strict unknown-field check for core kinds (field names from
 * @kubernetes/client-node's models, as `kubectl apply --validate=strict` would). Then the
 * properties DESIGN §8 and the issue ask for are asserted on the rendered objects.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const kubernetesDir = `${root}deploy/kubernetes`;
const OVERLAYS = ['management', 'attached'] as const;

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
};
// biome-ignore lint/suspicious/noExplicitAny: rendered YAML is walked dynamically
type Any = any;

const hasKubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
if (!hasKubectl) {
  console.warn(
    'kubectl not found: skipping the kustomize build tests (Debian: apt-get install kubernetes-client)',
  );
}

function render(overlay: string): Obj[] {
  return renderDir(`${kubernetesDir}/overlays/${overlay}`);
}

/** An overlay with the decision-mtls component added, as an operator opting in would write it. */
function renderWithMtls(overlay: string): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'kustomize-mtls-'));
  try {
    const to = (path: string) => relative(dir, `${kubernetesDir}/${path}`);
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${to(`overlays/${overlay}`)}]\ncomponents: [${to('components/decision-mtls')}]\n`,
    );
    return renderDir(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function renderDir(dir: string): Obj[] {
  const out = execFileSync('kubectl', ['kustomize', dir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);
}

/** Schema classes by apiVersion/kind: every kind the manifests may contain must be listed here. */
const MODELS: Record<string, new (data: Any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'traefik.io/v1alpha1/Middleware': Middleware,
  'traefik.io/v1alpha1/IngressRoute': IngressRoute,
  'traefik.io/v1alpha1/ServersTransport': ServersTransport,
  'cert-manager.io/v1/Certificate': Certificate,
  'cert-manager.io/v1/Issuer': Issuer,
};

/** client-node model names of the core kinds, for the unknown-field check. */
const CORE_MODELS: Record<string, string> = {
  'v1/Namespace': 'V1Namespace',
  'v1/ServiceAccount': 'V1ServiceAccount',
  'v1/ConfigMap': 'V1ConfigMap',
  'v1/Secret': 'V1Secret',
  'v1/Service': 'V1Service',
  'apps/v1/Deployment': 'V1Deployment',
  'apps/v1/StatefulSet': 'V1StatefulSet',
  'policy/v1/PodDisruptionBudget': 'V1PodDisruptionBudget',
  'autoscaling/v2/HorizontalPodAutoscaler': 'V2HorizontalPodAutoscaler',
  'networking.k8s.io/v1/NetworkPolicy': 'V1NetworkPolicy',
};

/** Field names that are not part of the object's schema, as "path.field". */
function unknownFields(value: unknown, type: string, path = ''): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    return Array.isArray(value)
      ? value.flatMap((v, i) => unknownFields(v, array[1] as string, `${path}[${i}]`))
      : [];
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    return typeof value === 'object'
      ? Object.entries(value as object).flatMap(([k, v]) =>
          unknownFields(v, map[1] as string, `${path}.${k}`),
        )
      : [];
  }
  const model = (
    k8s as unknown as Record<string, { getAttributeTypeMap?: () => { baseName: string; type: string }[] }>
  )[type];
  if (!model?.getAttributeTypeMap || typeof value !== 'object') return [];
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(value as object).flatMap(([k, v]) => {
    const t = fields.get(k);
    return t === undefined ? [`${path}.${k}`] : unknownFields(v, t, `${path}.${k}`);
  });
}

/** Traefik v3 ForwardAuth options (spec/traefik-forwardauth.md §2): anything else is a typo Traefik ignores. */
const FORWARD_AUTH_OPTIONS = new Set([
  'address',
  'tls',
  'trustForwardHeader',
  'authResponseHeaders',
  'authResponseHeadersRegex',
  'authRequestHeaders',
  'addAuthCookiesToResponse',
  'headerField',
  'forwardBody',
  'maxBodySize',
  'preserveLocationHeader',
  'preserveRequestMethod',
  'maxResponseBodySize',
  'authSigninURL',
]);

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
  '/kubeconfig',
  '/kubeconfig/download',
];

const key = (o: Obj) => `${o.apiVersion}/${o.kind}`;
const find = (objs: Obj[], kind: string, name?: string): Any =>
  objs.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const findAll = (objs: Obj[], kind: string): Any[] => objs.filter((o) => o.kind === kind);

/** Secrets as an operator would create them (secret.example.yaml lists the keys). */
const SECRET_FILES: Record<string, string> = {
  'client-secret': 'dex-client-secret-0123456789',
  'cookie-secrets': `v1:${'k3Q9xP2mV7bN4wL8zR1tY6uJ0hG5fD3s'}`,
  'redis-password': 'redis-password-0123456789',
};

/** The service's configuration as the pod would load it: ConfigMap env + *_FILE secrets. */
function podConfig(objs: Obj[], mounted: Record<string, string> = {}): Config {
  const deployment = find(objs, 'Deployment', 'dex-forward-auth');
  const container = deployment.spec.template.spec.containers[0];
  const configMapName = container.envFrom[0].configMapRef.name;
  const data = find(objs, 'ConfigMap', configMapName).data as Record<string, string>;
  const env: Record<string, string> = { ...data };
  const files: Record<string, string> = {};
  const mount = container.volumeMounts.find((m: Any) => m.name === 'secrets').mountPath;
  for (const e of container.env as { name: string; value?: string }[]) {
    if (e.value !== undefined) env[e.name] = e.value;
    if (e.name.endsWith('_FILE')) {
      const file = e.value as string;
      files[file] = mounted[file] ?? (SECRET_FILES[file.slice(mount.length + 1)] as string);
    }
  }
  return loadConfig(env, (path) => {
    const content = files[path];
    if (content === undefined) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    return content;
  });
}

describe.skipIf(!hasKubectl).each(OVERLAYS)('the %s overlay', (overlay) => {
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
    const problems: string[] = [];
    for (const o of objs) {
      const Model = MODELS[key(o)];
      if (!Model) {
        problems.push(`${key(o)} ${o.metadata.name}: no schema known`);
        continue;
      }
      try {
        new Model(o).validate();
      } catch (error) {
        problems.push(`${key(o)} ${o.metadata.name}: ${(error as Error).message}`);
      }
      const core = CORE_MODELS[key(o)];
      if (core) {
        for (const field of unknownFields(o, core))
          problems.push(`${key(o)} ${o.metadata.name}: unknown field ${field}`);
      }
    }
    for (const mw of findAll(objs, 'Middleware')) {
      for (const option of Object.keys(mw.spec.forwardAuth ?? {})) {
        if (!FORWARD_AUTH_OPTIONS.has(option))
          problems.push(`Middleware ${mw.metadata.name}: unknown forwardAuth.${option}`);
      }
    }
    expect(problems).toEqual([]);
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
      if (!e.name.endsWith('_FILE')) continue;
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

  it('the Middleware returns every upstream header, the session cookie, strips every identity header, keeps auth requests small and trusts no forwarded header', () => {
    const config = podConfig(objs);
    const fa = find(objs, 'Middleware', 'dex-forward-auth').spec.forwardAuth;
    expect(fa.trustForwardHeader).toBe(false);
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
    const scriptMap = find(
      objs,
      'ConfigMap',
      sts.spec.template.spec.volumes.find((v: Any) => v.name === 'scripts').configMap.name,
    );
    const script = scriptMap.data['configure.sh'] as string;
    const config = podConfig(objs);
    if (config.redis?.mode !== 'sentinel') throw new Error('sentinel mode expected');
    expect(script).toMatch(/sentinel monitor \$\{NAME\} \$\{MASTER\} 6379 2/);
    expect(script).toContain(`NAME=${config.redis.name}`);
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

describe.skipIf(!hasKubectl).each(OVERLAYS)('the %s overlay with the decision-mtls component', (overlay) => {
  let objs: Obj[];
  beforeAll(() => {
    objs = renderWithMtls(overlay);
  });

  it('validates against the Kubernetes, Traefik and cert-manager schemas', () => {
    const problems: string[] = [];
    for (const o of objs) {
      const Model = MODELS[key(o)];
      if (!Model) problems.push(`${key(o)} ${o.metadata.name}: no schema known`);
      else {
        try {
          new Model(o).validate();
        } catch (error) {
          problems.push(`${key(o)} ${o.metadata.name}: ${(error as Error).message}`);
        }
      }
    }
    expect(problems).toEqual([]);
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
        const mounted = {
          [envOf('AUTH_TLS_CERT_FILE')]: readFileSync(pki.serverCert, 'utf8'),
          [envOf('AUTH_TLS_KEY_FILE')]: readFileSync(pki.serverKey, 'utf8'),
          [envOf('AUTH_TLS_CLIENT_CA_FILE')]: readFileSync(pki.caCert, 'utf8'),
        };
        for (const file of Object.keys(mounted)) {
          expect(file.startsWith(`${mount.mountPath}/`)).toBe(true);
          expect(['tls.crt', 'tls.key', 'ca.crt']).toContain(file.slice(mount.mountPath.length + 1));
        }
        expect(podConfig(objs, mounted).decisionListener?.tls?.clientCaFile).toBe(
          envOf('AUTH_TLS_CLIENT_CA_FILE'),
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
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
