import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkSettings } from '../../src/doctor/index.ts';
import { CHART_DIR, helm, helmLint, helmTemplate, helmTemplateError } from '../support/helm.ts';
import {
  type Any,
  find,
  findAll,
  KUBERNETES_DIR,
  kustomize,
  type Obj,
  podConfig,
  podView,
  renderKustomize,
  renderWith,
  schemaProblems,
  TEST_CLUSTER,
  TEST_CLUSTER_CA,
  TEST_SECRET,
} from '../support/manifests.ts';

/**
 * deploy/helm/dex-forward-auth, rendered by a real Helm (v3.10.1, fetched on demand: see
 * test/support/helm.ts): `helm lint`, every rendered object against the same Kubernetes, Traefik,
 * Prometheus Operator and cert-manager schemas as the kustomize tests, the configuration each
 * rendering gives the pods, and — the point of the drift tests — the same objects as the
 * kustomize base, field for field.
 */

const { bin, reason } = helm();
if (!bin) console.warn(`no Helm binary: skipping the chart tests (${reason})`);
const withHelm = describe.skipIf(!bin);
const canKustomize = kustomize().command !== undefined;
if (!canKustomize) console.warn(`skipping the chart-to-kustomize drift tests: ${kustomize().reason}`);

/** Labels that only say who installed an object (Helm's release, kustomize's common labels). */
const RELEASE_LABELS = new Set([
  'app.kubernetes.io/instance',
  'app.kubernetes.io/part-of',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/version',
  'helm.sh/chart',
]);
/** kustomize's ConfigMap generator suffix (a hash of the content; Helm rolls pods by annotation). */
const HASH_SUFFIX = /-[bcdfghkmt2-9]{10}$/;

const isStringMap = (v: unknown): v is Record<string, string> =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x === 'string');

/**
 * An object as it works, not as it was installed: release labels and checksum annotations
 * dropped, kustomize's ConfigMap hash suffixes removed, env, volumes and mounts sorted by name.
 */
function normalize(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) {
    const items = value.map((v) => normalize(v));
    if (['env', 'volumes', 'volumeMounts'].includes(key)) {
      return items.sort((a: Any, b: Any) => String(a.name).localeCompare(String(b.name)));
    }
    return items;
  }
  if (typeof value !== 'object' || value === null) return value;
  if (['labels', 'matchLabels', 'selector'].includes(key) && isStringMap(value)) {
    return Object.fromEntries(Object.entries(value).filter(([k]) => !RELEASE_LABELS.has(k)));
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (k === 'annotations' && isStringMap(v)) {
      const kept = Object.entries(v).filter(([a]) => !a.startsWith('checksum/'));
      if (kept.length > 0) out[k] = Object.fromEntries(kept);
      continue;
    }
    out[k] = normalize(v, k);
  }
  return out;
}

function comparable(objs: Obj[]): Map<string, unknown> {
  const configMaps = new Set(findAll(objs, 'ConfigMap').map((c) => c.metadata.name as string));
  const unhash = (name: string) => (configMaps.has(name) ? name.replace(HASH_SUFFIX, '') : name);
  return new Map(
    objs.map((o) => {
      const copy = JSON.parse(JSON.stringify(o)) as Any;
      if (o.kind === 'ConfigMap') copy.metadata.name = unhash(copy.metadata.name);
      const pod = copy.spec?.template?.spec;
      for (const c of pod?.containers ?? []) {
        for (const from of c.envFrom ?? [])
          if (from.configMapRef) from.configMapRef.name = unhash(from.configMapRef.name);
      }
      for (const v of pod?.volumes ?? []) if (v.configMap) v.configMap.name = unhash(v.configMap.name);
      return [`${o.kind}/${copy.metadata.name}`, normalize(copy)];
    }),
  );
}

/** The differences, kind/name by kind/name: [] when chart and kustomize describe the same objects. */
function drift(kustomize: Obj[], chart: Obj[]): { objects: { kustomize: string[]; chart: string[] } } {
  const a = comparable(kustomize.filter((o) => o.kind !== 'Namespace'));
  const b = comparable(chart);
  for (const [name, obj] of a) if (b.has(name)) expect.soft(b.get(name), name).toEqual(obj);
  return { objects: { kustomize: [...a.keys()].sort(), chart: [...b.keys()].sort() } };
}

withHelm('the Helm chart', () => {
  it('passes helm lint --strict, with its defaults and with every Redis mode and option', () => {
    expect(helmLint()).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(
      helmLint({ 'redis.mode': 'external', 'redis.external.url': 'rediss://redis.example.com:6380' }),
    ).toMatch(/0 chart\(s\) failed/);
  });

  it('renders objects that validate against the Kubernetes, Traefik, Prometheus Operator and cert-manager schemas', () => {
    for (const objs of [
      helmTemplate(),
      helmTemplate({ setRaw: { 'decisionTls.enabled': 'true', 'clusterCA.enabled': 'true' } }),
      helmTemplate({ set: { 'redis.mode': 'external', 'redis.external.url': 'redis://r:6379' } }),
      helmTemplate({ setRaw: { 'secret.create': 'true' }, set: { 'secret.clientSecret': 'c' } }),
    ]) {
      expect(schemaProblems(objs)).toEqual([]);
    }
  });

  it.skipIf(!canKustomize)('describes the same objects as the kustomize base, field for field', () => {
    const { objects } = drift(renderKustomize(`${KUBERNETES_DIR}/base`), helmTemplate());
    expect(objects.chart).toEqual(objects.kustomize);
  });

  it.skipIf(!canKustomize)(
    'with decisionTls, the same objects as the base with the decision-mtls component',
    () => {
      const { objects } = drift(
        renderWith(['base'], ['components/decision-mtls']),
        helmTemplate({ setRaw: { 'decisionTls.enabled': 'true' } }),
      );
      expect(objects.chart).toEqual(objects.kustomize);
    },
  );

  it('runs the very configure.sh of the kustomize base for its Redis', () => {
    const script = find(helmTemplate(), 'ConfigMap', 'dex-forward-auth-redis').data['configure.sh'];
    expect(script).toBe(readFileSync(`${KUBERNETES_DIR}/base/redis/configure.sh`, 'utf8'));
    expect(readFileSync(`${CHART_DIR}/files/configure.sh`, 'utf8')).toBe(script);
  });
});

/** The pods' configuration from a chart rendering (the operator's Secret unless the chart made one). */
const chartConfig = (objs: Obj[]) => podConfig(podView(objs, TEST_CLUSTER));

withHelm('the Helm chart, configured', () => {
  it('gives the pods, by default, a valid configuration without problems doctor would report', () => {
    const config = chartConfig(helmTemplate());
    expect(checkSettings(config).filter((c) => c.status === 'problem')).toEqual([]);
    expect(config.redis).toMatchObject({
      mode: 'sentinel',
      name: 'dex-forward-auth',
      password: TEST_SECRET['redis-password'],
    });
    expect(config.decisionListener?.port).toBe(4181);
    expect(config.port).toBe(4180);
  });

  it('uses an external Redis by URL: no Redis of its own, egress to Redis ports anywhere', () => {
    const objs = helmTemplate({
      set: { 'redis.mode': 'external', 'redis.external.url': 'rediss://redis.example.com:6380' },
    });
    expect(findAll(objs, 'StatefulSet')).toEqual([]);
    expect(objs.filter((o) => o.metadata.name.endsWith('-redis'))).toEqual([]);
    expect(chartConfig(objs).redis).toMatchObject({
      mode: 'single',
      url: 'rediss://redis.example.com:6380',
      password: TEST_SECRET['redis-password'],
    });
    const egress = find(objs, 'NetworkPolicy', 'dex-forward-auth').spec.egress as Any[];
    expect(egress).toContainEqual({
      ports: [
        { port: 6379, protocol: 'TCP' },
        { port: 26379, protocol: 'TCP' },
      ],
    });
    expect(JSON.stringify(egress)).not.toContain('dex-forward-auth-redis');
  });

  it('uses external Sentinels, with or without a password', () => {
    const objs = helmTemplate({
      set: { 'redis.mode': 'externalSentinel', 'redis.externalSentinel.masterName': 'sessions' },
      setRaw: {
        'redis.externalSentinel.sentinels': '{s1.redis:26379,s2.redis:26379}',
        'redis.auth': 'false',
      },
    });
    expect(findAll(objs, 'StatefulSet')).toEqual([]);
    const config = podConfig(
      podView(objs, {
        secrets: {
          'dex-forward-auth': {
            'client-secret': 'c',
            'cookie-secrets': TEST_SECRET['cookie-secrets'] as string,
          },
        },
      }),
    );
    expect(config.redis).toEqual({
      mode: 'sentinel',
      name: 'sessions',
      sentinels: [
        { host: 's1.redis', port: 26379 },
        { host: 's2.redis', port: 26379 },
      ],
      tls: false,
    });
    const container = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec.containers[0];
    expect(container.env.map((e: Any) => e.name)).not.toContain('REDIS_PASSWORD_FILE');
  });

  it('refuses Redis values that cannot work, saying which value to set', () => {
    expect(helmTemplateError({ set: { 'redis.mode': 'external' } })).toMatch(/redis\.external\.url/);
    expect(helmTemplateError({ set: { 'redis.mode': 'externalSentinel' } })).toMatch(
      /redis\.externalSentinel\.sentinels/,
    );
    expect(helmTemplateError({ set: { 'redis.mode': 'cluster' } })).toMatch(
      /redis\.mode must be one of the following: "bundled", "external", "externalSentinel"/,
    );
    // values.schema.json: a misspelt value is refused instead of silently ignored.
    expect(helmTemplateError({ set: { 'redis.mdoe': 'external' } })).toMatch(
      /redis: Additional property mdoe is not allowed/,
    );
    expect(helmTemplateError({ setRaw: { 'redis.auth': 'false' } })).toMatch(
      /bundled Redis always has a password/,
    );
    expect(helmTemplateError({ setRaw: { 'redis.bundled.quorum': '1' } })).toMatch(
      /quorum 1: a majority of the 3 sentinels \(at least 2/,
    );
  });

  it('sizes its own Redis: every pod is a sentinel the service names, with the quorum configure.sh gets', () => {
    const objs = helmTemplate({ setRaw: { 'redis.bundled.replicas': '5', 'redis.bundled.quorum': '3' } });
    const sts = find(objs, 'StatefulSet', 'dex-forward-auth-redis');
    expect(sts.spec.replicas).toBe(5);
    const env = Object.fromEntries(
      sts.spec.template.spec.initContainers[0].env.map((e: Any) => [e.name, e.value]),
    );
    expect(env).toMatchObject({ REDIS_REPLICAS: '5', SENTINEL_QUORUM: '3', REDIS_SET: sts.metadata.name });
    const config = chartConfig(objs);
    if (config.redis?.mode !== 'sentinel') throw new Error('sentinel mode expected');
    expect(config.redis.sentinels.map((s) => s.host)).toEqual(
      [0, 1, 2, 3, 4].map((i) => `${sts.metadata.name}-${i}.${sts.spec.serviceName}.auth.svc.cluster.local`),
    );
  });

  it('reads an existing Secret by default, or one of another name, and holds no secret itself', () => {
    const objs = helmTemplate({ set: { 'secret.name': 'sso-credentials' } });
    expect(findAll(objs, 'Secret')).toEqual([]);
    const pod = find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec;
    expect(pod.volumes.find((v: Any) => v.name === 'secrets').secret.secretName).toBe('sso-credentials');
    const redisEnv = find(objs, 'StatefulSet', 'dex-forward-auth-redis').spec.template.spec.containers[0].env;
    expect(redisEnv.find((e: Any) => e.name === 'REDIS_PASSWORD').valueFrom.secretKeyRef.name).toBe(
      'sso-credentials',
    );
    expect(() => podView(objs, TEST_CLUSTER)).toThrow(/Secret sso-credentials/);
  });

  it('creates the Secret when asked: the client secret required, strong cookie and Redis secrets generated, given ones kept', () => {
    expect(helmTemplateError({ setRaw: { 'secret.create': 'true' } })).toMatch(/secret\.clientSecret/);
    const generated = helmTemplate({
      setRaw: { 'secret.create': 'true' },
      set: { 'secret.clientSecret': 'from-dex' },
    });
    const secret = find(generated, 'Secret', 'dex-forward-auth');
    const data = (key: string) => Buffer.from(secret.data[key], 'base64').toString('utf8');
    expect(data('client-secret')).toBe('from-dex');
    expect(data('cookie-secrets')).toMatch(/^v1:[A-Za-z0-9]{43}$/);
    expect(data('redis-password')).toMatch(/^[A-Za-z0-9]{32}$/);
    // The pods load it as it is rendered (no Secret from outside), and it passes the strength check.
    const config = podConfig(podView(generated, { configMaps: TEST_CLUSTER.configMaps }));
    expect(config.clientSecret).toBe('from-dex');
    const given = helmTemplate({
      setRaw: { 'secret.create': 'true' },
      set: {
        'secret.clientSecret': 'c',
        'secret.cookieSecrets': TEST_SECRET['cookie-secrets'] as string,
        'secret.redisPassword': 'r',
      },
    });
    expect(
      Buffer.from(find(given, 'Secret', 'dex-forward-auth').data['cookie-secrets'], 'base64').toString(),
    ).toBe(TEST_SECRET['cookie-secrets']);
  });

  it('takes settings from values, rolls the pods when they change, and refuses the ones the chart sets itself', () => {
    const base = helmTemplate();
    const objs = helmTemplate({
      set: { 'settings.LOG_LEVEL': 'debug', 'settings.ALLOWED_REDIRECT_DOMAINS': '.example.com' },
    });
    const config = chartConfig(objs);
    expect(config.logLevel).toBe('debug');
    expect(config.allowedRedirectDomains).toEqual(['.example.com']);
    const checksum = (o: Obj[]) =>
      find(o, 'Deployment', 'dex-forward-auth').spec.template.metadata.annotations['checksum/settings'];
    expect(checksum(objs)).not.toBe(checksum(base));
    expect(helmTemplateError({ set: { 'settings.PORT': '8080' } })).toMatch(
      /settings\.PORT is set by the chart/,
    );
    expect(helmTemplateError({ set: { 'settings.REDIS_URL': 'redis://x' } })).toMatch(
      /settings\.REDIS_URL is set by the chart/,
    );
    expect(helmTemplateError({ set: { 'settings.COOKIE_SECRETS_FILE': '/x' } })).toMatch(
      /secrets come from the Secret/,
    );
  });

  it('keeps the Middleware in step with the settings: upstream headers and cookie name', () => {
    const objs = helmTemplate({
      set: {
        'settings.UPSTREAM_HEADERS': 'Authorization,X-Auth-Request-User',
        'settings.COOKIE_NAME': '_sso',
      },
    });
    const fa = find(objs, 'Middleware', 'dex-forward-auth').spec.forwardAuth;
    expect(fa.authResponseHeaders).toEqual(chartConfig(objs).upstreamHeaders);
    expect(fa.authResponseHeaders).toEqual(['Authorization', 'X-Auth-Request-User']);
    expect(fa.addAuthCookiesToResponse).toEqual(['_sso', '__Host-_sso']);
  });

  it('mounts a CONFIG_FILE from values and the cluster CA, for the kubeconfig page', () => {
    const objs = helmTemplate({
      values: [
        'clusterCA: { enabled: true }',
        'config:',
        '  KUBE_CLUSTERS:',
        '    - name: mgmt',
        '      server: https://k8s.mgmt.example.com:6443',
        '      caFile: /etc/dex-forward-auth/cluster-ca/ca.crt',
        '      clientId: kubectl',
        '      audience: kubernetes',
      ].join('\n'),
    });
    expect(schemaProblems(objs)).toEqual([]);
    expect(chartConfig(objs).kubeClusters).toEqual([
      expect.objectContaining({
        name: 'mgmt',
        clientId: 'kubectl',
        audience: 'kubernetes',
        caData: Buffer.from(TEST_CLUSTER_CA).toString('base64'),
      }),
    ]);
  });

  it('names everything after the release, in its namespace, and the names still meet', () => {
    const objs = helmTemplate({ release: 'sso', namespace: 'platform' });
    expect(schemaProblems(objs)).toEqual([]);
    for (const o of objs) {
      expect(o.metadata.name).toMatch(/^sso-dex-forward-auth(-|$)/);
      expect(o.metadata.namespace).toBe('platform');
    }
    const fa = find(objs, 'Middleware', 'sso-dex-forward-auth').spec.forwardAuth;
    expect(new URL(fa.address).hostname).toBe('sso-dex-forward-auth.platform.svc.cluster.local');
    const cluster = { ...TEST_CLUSTER, secrets: { 'sso-dex-forward-auth': TEST_SECRET } };
    const config = podConfig(podView(objs, cluster, 'sso-dex-forward-auth'));
    const sts = find(objs, 'StatefulSet', 'sso-dex-forward-auth-redis');
    if (config.redis?.mode !== 'sentinel') throw new Error('sentinel mode expected');
    expect(config.redis.sentinels[0]?.host).toBe(
      `${sts.metadata.name}-0.${sts.spec.serviceName}.platform.svc.cluster.local`,
    );
    // Every selector selects the pods it is meant for.
    const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    const podLabels = find(objs, 'Deployment', 'sso-dex-forward-auth').spec.template.metadata.labels;
    const redisLabels = sts.spec.template.metadata.labels;
    expect(selects(find(objs, 'Service', 'sso-dex-forward-auth').spec.selector, podLabels)).toBe(true);
    expect(
      selects(find(objs, 'NetworkPolicy', 'sso-dex-forward-auth').spec.podSelector.matchLabels, podLabels),
    ).toBe(true);
    const redisNp = find(objs, 'NetworkPolicy', 'sso-dex-forward-auth-redis').spec;
    expect(selects(redisNp.podSelector.matchLabels, redisLabels)).toBe(true);
    expect(selects(redisNp.ingress[0].from[0].podSelector.matchLabels, podLabels)).toBe(true);
    expect(selects(find(objs, 'Service', sts.spec.serviceName).spec.selector, redisLabels)).toBe(true);
    // Another release in the namespace is not selected.
    const other = helmTemplate({ release: 'other', namespace: 'platform' });
    const otherLabels = find(other, 'Deployment', 'other-dex-forward-auth').spec.template.metadata.labels;
    expect(selects(find(objs, 'Service', 'sso-dex-forward-auth').spec.selector, otherLabels)).toBe(false);
  });

  it.skipIf(!canKustomize)(
    'installs, with the README’s values-mgmt.yaml, what the management overlay configures',
    () => {
      const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
      const values = /with a `values-mgmt\.yaml` such as:\n\n```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
      if (!values) throw new Error('README: no values-mgmt.yaml');
      const objs = helmTemplate({ values });
      expect(schemaProblems(objs)).toEqual([]);
      const chart = chartConfig(objs);
      const overlay = podConfig(
        podView(renderKustomize(`${KUBERNETES_DIR}/overlays/management`), TEST_CLUSTER),
      );
      expect(chart).toEqual(overlay);
      expect(find(objs, 'Deployment', 'dex-forward-auth').spec.template.spec.containers[0].image).toBe(
        'registry.example.com/platform/dex-forward-auth:0.1.0',
      );
    },
  );

  it('leaves out the ServiceMonitor, Middleware, NetworkPolicies and HPA when they are turned off', () => {
    const objs = helmTemplate({
      setRaw: {
        'serviceMonitor.enabled': 'false',
        'middleware.enabled': 'false',
        'networkPolicy.enabled': 'false',
        'autoscaling.enabled': 'false',
      },
    });
    for (const kind of ['ServiceMonitor', 'Middleware', 'NetworkPolicy', 'HorizontalPodAutoscaler']) {
      expect(findAll(objs, kind), kind).toEqual([]);
    }
    expect(find(objs, 'Deployment', 'dex-forward-auth').spec.replicas).toBe(3);
  });
});
