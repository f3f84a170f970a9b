import { createRequire } from 'node:module';
import type { Informer, KubeConfig, KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import type { Logger } from '../log.ts';
import {
  type ClusterRole,
  type ClusterRoleBinding,
  parseRbacObject,
  type RbacObjects,
} from './rbacObjects.ts';

/**
 * ClusterRoles and ClusterRoleBindings watched live from the cluster the pod runs in (`rbac.kubernetes:
 * true`), through @kubernetes/client-node's list-then-watch informers. The in-cluster service
 * account is used unless AUTHZ_KUBECONFIG names a kubeconfig file. The pod's service account needs
 * `list` and `watch` on both kinds (see README).
 *
 * The informers keep their cache across errors; a failed watch is restarted with back-off
 * (1 s → 30 s). Until both kinds have been listed once, `synced` is false and RBAC decisions
 * answer 503 rather than deny everyone.
 */

export interface KubeRbacSource {
  readonly synced: boolean;
  /** The last error, while the watch is failing. */
  readonly lastError: string | undefined;
  objects(): RbacObjects;
  close(): Promise<void>;
}

export interface KubeRbacOptions {
  readonly kubeconfigPath: string | undefined;
  readonly log: Logger;
  /** Called (debounced by the caller) whenever the cached objects change or the first sync completes. */
  readonly onChange: () => void;
  readonly onError?: (message: string) => void;
  /** First back-off step, ms (tests shorten it). */
  readonly backoffMs?: number;
}

const PATHS = {
  roles: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
  bindings: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
} as const;

type KubeClient = typeof import('@kubernetes/client-node');

/**
 * @kubernetes/client-node is loaded only when the live watch is configured: it alone adds ~80 MB
 * to the process, which every replica without `rbac.kubernetes: true` should not pay.
 */
function kubeClient(): KubeClient {
  return createRequire(import.meta.url)('@kubernetes/client-node') as KubeClient;
}

function loadKubeConfig(k8s: KubeClient, path: string | undefined): KubeConfig {
  const kc = new k8s.KubeConfig();
  if (path) {
    kc.loadFromFile(path);
  } else {
    // The in-cluster configuration comes from KUBERNETES_SERVICE_HOST/PORT (read by the library).
    kc.loadFromCluster();
    if (kc.getCurrentCluster()?.server.includes('undefined')) {
      throw new Error(
        'the service is not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is unset); set AUTHZ_KUBECONFIG to use a kubeconfig file',
      );
    }
  }
  if (!kc.getCurrentCluster()) throw new Error('the kubeconfig names no current cluster');
  return kc;
}

function describeError(error: unknown): string {
  const e = error as { statusCode?: number; code?: number | string; message?: string; body?: unknown };
  const status = e?.statusCode ?? (typeof e?.code === 'number' ? e.code : undefined);
  const base = e?.message ?? String(error);
  if (status === 401 || status === 403) {
    return `${base} (HTTP ${status}: the service account needs list and watch on clusterroles and clusterrolebindings)`;
  }
  return status ? `${base} (HTTP ${status})` : base;
}

type KindName = 'clusterroles' | 'clusterrolebindings';
type KubeList = { items: KubernetesObject[]; metadata?: { resourceVersion?: string } };
type ListFn = () => Promise<KubeList>;
type KindInformer = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

/** What both watches share: whether the source is closed, and the last error while failing. */
interface WatchState {
  closed: boolean;
  lastError: string | undefined;
}

/** Starts watching; never throws for network errors (they are retried), only for a missing configuration. */
export function watchClusterRbac(options: KubeRbacOptions): KubeRbacSource {
  const k8s = kubeClient();
  const kc = loadKubeConfig(k8s, options.kubeconfigPath);
  const api = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
  const state: WatchState = { closed: false, lastError: undefined };
  const watch = (name: KindName, path: string, list: ListFn) =>
    new WatchedKind(name, list, (fn) => k8s.makeInformer(kc, path, fn as never), state, options);
  const roles = watch('clusterroles', PATHS.roles, () => api.listClusterRole());
  const bindings = watch('clusterrolebindings', PATHS.bindings, () => api.listClusterRoleBinding());
  for (const w of [roles, bindings]) w.start();
  options.log.info(
    { server: kc.getCurrentCluster()?.server },
    'watching ClusterRoles and ClusterRoleBindings',
  );
  return {
    get synced() {
      return roles.listed && bindings.listed;
    },
    get lastError() {
      return state.lastError;
    },
    objects() {
      const out = [...roles.read(), ...bindings.read()];
      return {
        roles: out.filter((o): o is ClusterRole => o.kind === 'ClusterRole'),
        bindings: out.filter((o): o is ClusterRoleBinding => o.kind === 'ClusterRoleBinding'),
      };
    },
    async close() {
      state.closed = true;
      for (const w of [roles, bindings]) await w.stop();
    },
  };
}

/**
 * One kind's list-then-watch informer: its first listing, its changes (to `onChange`), and a
 * failed watch restarted with back-off (1 s → 30 s), reset by each good listing.
 */
class WatchedKind {
  listed = false;
  readonly #name: KindName;
  readonly #informer: KindInformer;
  readonly #state: WatchState;
  readonly #options: KubeRbacOptions;
  readonly #firstBackoff: number;
  #backoff: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    name: KindName,
    list: ListFn,
    makeInformer: (list: ListFn) => KindInformer,
    state: WatchState,
    options: KubeRbacOptions,
  ) {
    this.#name = name;
    this.#state = state;
    this.#options = options;
    this.#firstBackoff = options.backoffMs ?? 1_000;
    this.#backoff = this.#firstBackoff;
    this.#informer = makeInformer(() => this.#list(list));
    this.#informer.on('add', options.onChange);
    this.#informer.on('update', options.onChange);
    this.#informer.on('delete', options.onChange);
    this.#informer.on('error', (error: unknown) => this.#failed(error));
  }

  start(): void {
    void this.#informer.start().catch(() => undefined);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    await this.#informer.stop();
  }

  /** The cached objects as RBAC objects; a malformed one is logged and left out. */
  read(): (ClusterRole | ClusterRoleBinding)[] {
    const out: (ClusterRole | ClusterRoleBinding)[] = [];
    for (const obj of this.#informer.list()) {
      const problems: string[] = [];
      const parsed = this.#parse(obj, problems);
      if (parsed) out.push(parsed);
      if (problems.length > 0) {
        this.#options.log.warn({ problems }, 'ignoring a malformed RBAC object from the cluster');
      }
    }
    return out;
  }

  #parse(obj: KubernetesObject, problems: string[]): ClusterRole | ClusterRoleBinding | undefined {
    try {
      // Objects from a list are client models; from a watch, plain JSON. Both carry the same field names.
      const plain = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
      plain['kind'] = this.#name === 'clusterroles' ? 'ClusterRole' : 'ClusterRoleBinding';
      const parsed = parseRbacObject(plain, `cluster ${this.#name}`, problems);
      return parsed && parsed !== 'ignored' ? parsed : undefined;
    } catch (error) {
      // One object that cannot be read (nested too deeply, say) must not hold back the others.
      problems.push(`cluster ${this.#name} ${obj.metadata?.name ?? '?'}: ${(error as Error).message}`);
      return undefined;
    }
  }

  async #list(list: ListFn): Promise<KubeList> {
    const result = await list();
    const first = !this.listed;
    this.listed = true;
    this.#backoff = this.#firstBackoff;
    this.#state.lastError = undefined;
    if (first) queueMicrotask(this.#options.onChange);
    return result;
  }

  #failed(error: unknown): void {
    if (this.#state.closed) return;
    const lastError = `${this.#name}: ${describeError(error)}`;
    this.#state.lastError = lastError;
    this.#options.log.warn(
      { err: { message: lastError }, retryInMs: this.#backoff },
      'kubernetes RBAC watch failed; retrying',
    );
    this.#options.onError?.(lastError);
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#state.closed) this.start();
    }, this.#backoff);
    this.#timer.unref();
    this.#backoff = Math.min(this.#backoff * 2, 30_000);
  }
}
