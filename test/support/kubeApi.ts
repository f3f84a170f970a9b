/**
 * A minimal Kubernetes API server STAND-IN for tests — clearly not Kubernetes. It speaks just enough
 * of the list/watch protocol for the two RBAC kinds the service watches:
 *
 *   GET /apis/rbac.authorization.k8s.io/v1/clusterroles                → ClusterRoleList (metadata.resourceVersion)
 *   GET /apis/rbac.authorization.k8s.io/v1/clusterroles?watch=true&resourceVersion=N
 *       → 200, chunked `application/json`, one `{"type":"ADDED|MODIFIED|DELETED","object":{…}}` line per change
 *         after N, kept open; `{"type":"ERROR","object":{Status 410}}` when N is older than the history kept
 *   (the same for clusterrolebindings)
 *
 * Requests must carry `Authorization: Bearer <token>` (401 Status otherwise). Resource versions are one
 * counter for both kinds, as etcd's are. Listens on 127.0.0.1 only.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

type Resource = 'clusterroles' | 'clusterrolebindings';
type Obj = {
  kind?: string;
  metadata: { name: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
};

interface WatchEvent {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: Obj;
}

const API = '/apis/rbac.authorization.k8s.io/v1/';
const KIND: Record<Resource, string> = {
  clusterroles: 'ClusterRole',
  clusterrolebindings: 'ClusterRoleBinding',
};

export interface KubeApiRequest {
  readonly method: string;
  readonly resource: string;
  readonly watch: boolean;
  readonly resourceVersion: string | null;
  readonly authorization: string | undefined;
}

export interface KubeApi {
  readonly url: string;
  readonly token: string;
  readonly requests: KubeApiRequest[];
  /** Open watch connections. */
  readonly watchers: number;
  /** Create or replace a ClusterRole or ClusterRoleBinding (by its `kind`). */
  apply(object: Record<string, unknown>): void;
  remove(kind: 'ClusterRole' | 'ClusterRoleBinding', name: string): void;
  /** The next `n` list requests answer with `status` (e.g. 403 before RBAC for the service account exists). */
  failNextLists(n: number, status: number): void;
  /** Server-side close of every open watch (as the API server does after its timeout). */
  dropWatches(): void;
  /** A kubeconfig file for this stand-in, written into `dir`. */
  writeKubeconfig(dir: string): string;
  close(): Promise<void>;
}

export async function startKubeApi(
  options: { token?: string; objects?: Record<string, unknown>[] } = {},
): Promise<KubeApi> {
  const token = options.token ?? 'stand-in-service-account-token';
  const store: Record<Resource, Map<string, Obj>> = {
    clusterroles: new Map(),
    clusterrolebindings: new Map(),
  };
  const history: Record<Resource, WatchEvent[]> = { clusterroles: [], clusterrolebindings: [] };
  const watches: Record<Resource, Set<ServerResponse>> = {
    clusterroles: new Set(),
    clusterrolebindings: new Set(),
  };
  const requests: KubeApiRequest[] = [];
  let rv = 100;
  let failLists = 0;
  let failStatus = 500;

  const resourceOf = (kind: unknown): Resource => {
    if (kind === 'ClusterRole') return 'clusterroles';
    if (kind === 'ClusterRoleBinding') return 'clusterrolebindings';
    throw new Error(`kube stand-in: unsupported kind ${String(kind)}`);
  };

  const emit = (resource: Resource, event: WatchEvent): void => {
    history[resource].push(event);
    for (const res of watches[resource])
      res.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
  };

  const apply = (object: Record<string, unknown>): void => {
    const resource = resourceOf(object['kind']);
    const copy = structuredClone(object) as Obj;
    rv += 1;
    copy.metadata = { ...copy.metadata, resourceVersion: String(rv) };
    copy['apiVersion'] = 'rbac.authorization.k8s.io/v1';
    const existed = store[resource].has(copy.metadata.name);
    store[resource].set(copy.metadata.name, copy);
    emit(resource, { rv, type: existed ? 'MODIFIED' : 'ADDED', object: copy });
  };

  for (const o of options.objects ?? []) apply(o);

  const status = (res: ServerResponse, code: number, reason: string): void => {
    const body = JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      message: reason,
      reason,
      code,
    });
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const resource = url.pathname.startsWith(API) ? url.pathname.slice(API.length) : '';
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    requests.push({
      method: req.method ?? 'GET',
      resource,
      watch,
      resourceVersion: url.searchParams.get('resourceVersion'),
      authorization: req.headers.authorization,
    });
    if (req.headers.authorization !== `Bearer ${token}`) {
      status(res, 401, 'Unauthorized');
      return;
    }
    if (req.method !== 'GET' || (resource !== 'clusterroles' && resource !== 'clusterrolebindings')) {
      status(res, 404, 'NotFound');
      return;
    }
    if (!watch) {
      if (failLists > 0) {
        failLists -= 1;
        status(res, failStatus, failStatus === 403 ? 'Forbidden' : 'InternalError');
        return;
      }
      const items = [...store[resource].values()].map(({ kind: _kind, apiVersion: _v, ...rest }) => rest);
      const body = JSON.stringify({
        kind: `${KIND[resource]}List`,
        apiVersion: 'rbac.authorization.k8s.io/v1',
        metadata: { resourceVersion: String(rv) },
        items,
      });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const from = Number(url.searchParams.get('resourceVersion') ?? '0');
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    const oldest = history[resource][0]?.rv ?? rv;
    if (from > 0 && from < oldest - 1) {
      res.end(
        `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 } })}\n`,
      );
      return;
    }
    for (const event of history[resource]) {
      if (event.rv > from) res.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
    }
    watches[resource].add(res);
    res.on('close', () => watches[resource].delete(res));
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    token,
    requests,
    get watchers() {
      return watches.clusterroles.size + watches.clusterrolebindings.size;
    },
    apply,
    remove(kind, name) {
      const resource = resourceOf(kind);
      const existing = store[resource].get(name);
      if (!existing) return;
      store[resource].delete(name);
      rv += 1;
      emit(resource, {
        rv,
        type: 'DELETED',
        object: { ...existing, metadata: { ...existing.metadata, resourceVersion: String(rv) } },
      });
    },
    failNextLists(n, code) {
      failLists = n;
      failStatus = code;
    },
    dropWatches() {
      for (const set of Object.values(watches)) {
        for (const res of set) res.end();
        set.clear();
      }
    },
    writeKubeconfig(dir) {
      const path = join(dir, 'kubeconfig.yaml');
      writeFileSync(
        path,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters:',
          '  - name: stand-in',
          `    cluster: { server: "${url}", insecure-skip-tls-verify: true }`,
          'users:',
          '  - name: stand-in',
          `    user: { token: "${token}" }`,
          'contexts:',
          '  - name: stand-in',
          '    context: { cluster: stand-in, user: stand-in }',
          'current-context: stand-in',
          '',
        ].join('\n'),
      );
      return path;
    },
    async close() {
      for (const set of Object.values(watches)) for (const res of set) res.end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
