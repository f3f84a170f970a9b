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

/** Starts watching; never throws for network errors (they are retried), only for a missing configuration. */
export function watchClusterRbac(options: KubeRbacOptions): KubeRbacSource {
  const { log } = options;
  const k8s = kubeClient();
  const kc = loadKubeConfig(k8s, options.kubeconfigPath);
  const api = kc.makeApiClient(k8s.RbacAuthorizationV1Api);
  const firstBackoff = options.backoffMs ?? 1_000;

  interface Watched {
    readonly name: 'clusterroles' | 'clusterrolebindings';
    readonly informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
    listed: boolean;
    backoff: number;
    timer: NodeJS.Timeout | undefined;
  }

  let closed = false;
  let lastError: string | undefined;

  const make = (
    name: Watched['name'],
    path: string,
    list: () => Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }>,
  ): Watched => {
    const w: Watched = {
      name,
      informer: undefined as unknown as Watched['informer'],
      listed: false,
      backoff: firstBackoff,
      timer: undefined,
    };
    const informer = k8s.makeInformer<KubernetesObject>(kc, path, async () => {
      const result = await list();
      const first = !w.listed;
      w.listed = true;
      w.backoff = firstBackoff;
      lastError = undefined;
      if (first) queueMicrotask(options.onChange);
      return result as never;
    });
    informer.on('add', options.onChange);
    informer.on('update', options.onChange);
    informer.on('delete', options.onChange);
    informer.on('error', (error: unknown) => {
      if (closed) return;
      lastError = `${name}: ${describeError(error)}`;
      log.warn(
        { err: { message: lastError }, retryInMs: w.backoff },
        'kubernetes RBAC watch failed; retrying',
      );
      options.onError?.(lastError);
      if (w.timer) return;
      w.timer = setTimeout(() => {
        w.timer = undefined;
        if (!closed) void informer.start().catch(() => undefined);
      }, w.backoff);
      w.timer.unref();
      w.backoff = Math.min(w.backoff * 2, 30_000);
    });
    (w as { informer: Watched['informer'] }).informer = informer;
    return w;
  };

  const roles = make('clusterroles', PATHS.roles, () => api.listClusterRole());
  const bindings = make('clusterrolebindings', PATHS.bindings, () => api.listClusterRoleBinding());
  for (const w of [roles, bindings]) void w.informer.start().catch(() => undefined);
  log.info({ server: kc.getCurrentCluster()?.server }, 'watching ClusterRoles and ClusterRoleBindings');

  const read = (w: Watched, out: (ClusterRole | ClusterRoleBinding)[]): void => {
    for (const obj of w.informer.list()) {
      const problems: string[] = [];
      try {
        // Objects from a list are client models; from a watch, plain JSON. Both carry the same field names.
        const plain = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
        plain['kind'] = w.name === 'clusterroles' ? 'ClusterRole' : 'ClusterRoleBinding';
        const parsed = parseRbacObject(plain, `cluster ${w.name}`, problems);
        if (parsed && parsed !== 'ignored') out.push(parsed);
      } catch (error) {
        // One object that cannot be read (nested too deeply, say) must not hold back the others.
        problems.push(`cluster ${w.name} ${obj.metadata?.name ?? '?'}: ${(error as Error).message}`);
      }
      if (problems.length > 0) log.warn({ problems }, 'ignoring a malformed RBAC object from the cluster');
    }
  };

  return {
    get synced() {
      return roles.listed && bindings.listed;
    },
    get lastError() {
      return lastError;
    },
    objects() {
      const out: (ClusterRole | ClusterRoleBinding)[] = [];
      read(roles, out);
      read(bindings, out);
      return {
        roles: out.filter((o): o is ClusterRole => o.kind === 'ClusterRole'),
        bindings: out.filter((o): o is ClusterRoleBinding => o.kind === 'ClusterRoleBinding'),
      };
    },
    async close() {
      closed = true;
      for (const w of [roles, bindings]) {
        if (w.timer) clearTimeout(w.timer);
        await w.informer.stop();
      }
    },
  };
}
