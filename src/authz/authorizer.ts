import { type FSWatcher, watch } from 'node:fs';
import { dirname } from 'node:path';
import { AppError } from '../errors.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import { type EvaluablePolicy, evaluate } from './evaluate.ts';
import { type KubeRbacOptions, type KubeRbacSource, watchClusterRbac } from './kubeWatch.ts';
import { canonicalPath } from './path.ts';
import type { AccessRequest, Authorizer, AuthorizerStatus, Decision } from './policy.ts';
import { type PolicySnapshot, type PolicySpec, parsePolicy, takeSnapshot } from './policyFile.ts';
import { buildRbacIndex } from './rbac.ts';
import { NO_RBAC_OBJECTS } from './rbacObjects.ts';

/**
 * The AUTHZ_CONFIG authorizer: holds the current policy and swaps it when the files change. A
 * broken file keeps the last good policy and says why (log line and metric); at start-up there is
 * no last good policy, so a broken file stops start-up (PolicyLoadError, reported like a bad
 * setting).
 *
 * Changes are noticed through fs.watch on the files' directories (ConfigMap mounts swap a symlink,
 * so whole directories are watched) and, as a safety net, by polling every `pollMs`; either way
 * the files are re-read and re-parsed only when their bytes changed.
 */

export class PolicyLoadError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid authorization policy:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'PolicyLoadError';
    this.problems = problems;
  }
}

export interface PolicyEvents {
  reload(source: 'file' | 'kubernetes', result: 'ok' | 'error'): void;
}

export interface PolicyAuthorizerOptions {
  readonly path: string;
  readonly log: Logger;
  readonly events?: PolicyEvents;
  /** AUTHZ_KUBECONFIG: a kubeconfig for the RBAC watch instead of the in-cluster service account. */
  readonly kubeconfigPath?: string;
  /** Safety-net poll interval, ms (default 5000). */
  readonly pollMs?: number;
  /** Replaces the Kubernetes watch (tests). */
  readonly watchKubernetes?: (options: KubeRbacOptions) => KubeRbacSource;
  readonly readFile?: (path: string) => string;
}

interface Active {
  readonly spec: PolicySpec;
  readonly evaluable: EvaluablePolicy;
}

const noEvents: PolicyEvents = { reload() {} };

/**
 * The longest path (as forwarded, before decoding) the policy judges; longer ones get 414. Paths
 * this long are never legitimate dashboard URLs, and every URL pattern costs time in proportion to
 * the path it is matched against.
 */
export const MAX_JUDGED_PATH = 8192;

export class PolicyAuthorizer implements Authorizer {
  readonly #options: PolicyAuthorizerOptions;
  readonly #log: Logger;
  readonly #events: PolicyEvents;
  #active: Active;
  #hash: string;
  #badHash: string | undefined;
  #lastError: string | undefined;
  #loadedAt: number;
  #kube: KubeRbacSource | undefined;
  #kubeError: string | undefined;
  #rebuildScheduled = false;
  #watchers: FSWatcher[] = [];
  #watchedDirs = new Set<string>();
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #closed = false;

  /** Loads the policy; throws PolicyLoadError when it is invalid. */
  constructor(options: PolicyAuthorizerOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#events = options.events ?? noEvents;
    const snapshot = takeSnapshot(options.path, options.readFile);
    const load = parsePolicy(snapshot);
    if (!load.spec) throw new PolicyLoadError(load.problems);
    for (const warning of load.warnings) this.#log.warn({ path: options.path }, warning);
    this.#hash = snapshot.hash;
    this.#loadedAt = Date.now();
    this.#active = { spec: load.spec, evaluable: this.#evaluable(load.spec) };
    this.#syncKubernetes(load.spec);
    this.#logLoaded(load.spec, 'authorization policy loaded');
    this.#events.reload('file', 'ok');
    this.#watch(snapshot);
    const pollMs = options.pollMs ?? 5_000;
    this.#poll = setInterval(() => this.check(), pollMs);
    this.#poll.unref();
  }

  decide(identity: Identity, request: AccessRequest): Decision {
    if (request.path.length > MAX_JUDGED_PATH) {
      throw new AppError(
        'uri_too_long',
        `The requested path is longer than the ${MAX_JUDGED_PATH} characters the access policy judges.`,
        { detail: `path of ${request.path.length} characters` },
      );
    }
    const path = canonicalPath(request.path);
    if (path === undefined) {
      throw new AppError('bad_request', 'The requested path cannot be checked against the access policy.', {
        detail: 'path with dot segments, control characters or bad percent-escapes',
      });
    }
    const { spec, evaluable } = this.#active;
    const decision = evaluate(
      identity,
      { method: request.method, scheme: request.proto ?? 'https', host: request.host, path },
      evaluable,
    );
    // Before the cluster's RBAC objects are known, a refusal that RBAC might have lifted is not a
    // refusal yet: 503 with Retry-After rather than denying everyone during a restart.
    if (
      !decision.allowed &&
      (decision.source === 'rbac' || decision.source === 'default') &&
      spec.kubernetes &&
      !this.#kube?.synced
    ) {
      throw new AppError(
        'policy_unavailable',
        'Access rules are still loading from the cluster. Please try again shortly.',
        { detail: this.#kubeError ?? 'kubernetes RBAC not synced yet', headers: { 'Retry-After': '5' } },
      );
    }
    return decision;
  }

  status(): AuthorizerStatus {
    const { spec, evaluable } = this.#active;
    return {
      mode: 'policy',
      path: this.#options.path,
      loadedAt: new Date(this.#loadedAt).toISOString(),
      rules: spec.rules.length,
      default: spec.defaultAllow ? 'allow' : 'deny',
      ...(spec.rbacEnabled
        ? {
            rbac: {
              files: spec.rbacFiles.length,
              clusterRoles: evaluable.rbac?.roles ?? 0,
              clusterRoleBindings: evaluable.rbac?.bindings ?? 0,
              ...(spec.kubernetes ? { kubernetes: this.#kube?.synced ? 'synced' : 'syncing' } : {}),
            },
          }
        : {}),
      ...(this.#lastError ? { lastReloadError: this.#lastError } : {}),
      ...(this.#kubeError ? { kubernetesError: this.#kubeError } : {}),
    };
  }

  /**
   * Re-reads the files and swaps the policy when they changed and are valid. Runs from timers and
   * file watchers, so it never throws: whatever goes wrong keeps the last good policy and logs.
   */
  check(): void {
    if (this.#closed) return;
    try {
      this.#reload();
    } catch (error) {
      this.#lastError = `reload failed: ${(error as Error).message}`;
      this.#log.error(
        { path: this.#options.path, err: { message: (error as Error).message } },
        'authorization policy NOT reloaded: keeping the last good policy',
      );
      this.#events.reload('file', 'error');
    }
  }

  #reload(): void {
    const snapshot = takeSnapshot(this.#options.path, this.#options.readFile);
    if (snapshot.hash === this.#hash || snapshot.hash === this.#badHash) return;
    const load = parsePolicy(snapshot);
    this.#watch(snapshot);
    let problems = load.problems;
    if (load.spec) {
      try {
        this.#syncKubernetes(load.spec);
      } catch (error) {
        problems = error instanceof PolicyLoadError ? error.problems : [(error as Error).message];
      }
    }
    if (!load.spec || problems.length > 0) {
      this.#badHash = snapshot.hash;
      this.#lastError = problems.join('; ');
      this.#log.error(
        { path: this.#options.path, problems },
        'authorization policy NOT reloaded: keeping the last good policy',
      );
      this.#events.reload('file', 'error');
      return;
    }
    for (const warning of load.warnings) this.#log.warn({ path: this.#options.path }, warning);
    this.#hash = snapshot.hash;
    this.#badHash = undefined;
    this.#lastError = undefined;
    this.#loadedAt = Date.now();
    this.#active = { spec: load.spec, evaluable: this.#evaluable(load.spec) };
    this.#logLoaded(load.spec, 'authorization policy reloaded');
    this.#events.reload('file', 'ok');
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#poll) clearInterval(this.#poll);
    if (this.#debounce) clearTimeout(this.#debounce);
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    await this.#kube?.close();
    this.#kube = undefined;
  }

  #evaluable(spec: PolicySpec): EvaluablePolicy {
    if (!spec.rbacEnabled) return { defaultAllow: spec.defaultAllow, rules: spec.rules, rbac: undefined };
    const cluster = spec.kubernetes && this.#kube ? this.#kube.objects() : NO_RBAC_OBJECTS;
    const rbac = buildRbacIndex({
      roles: [...spec.fileObjects.roles, ...cluster.roles],
      bindings: [...spec.fileObjects.bindings, ...cluster.bindings],
    });
    if (rbac.dangling.length > 0) {
      this.#log.warn(
        { bindings: rbac.dangling.slice(0, 20) },
        'ClusterRoleBindings name ClusterRoles that do not exist',
      );
    }
    return { defaultAllow: spec.defaultAllow, rules: spec.rules, rbac };
  }

  /** Starts or stops the Kubernetes watch as the policy asks. */
  #syncKubernetes(spec: PolicySpec): void {
    if (spec.kubernetes && !this.#kube) {
      const start = this.#options.watchKubernetes ?? watchClusterRbac;
      try {
        this.#kube = start({
          kubeconfigPath: this.#options.kubeconfigPath,
          log: this.#log,
          onChange: () => this.#scheduleRebuild(),
          onError: (message) => {
            this.#kubeError = message;
            this.#events.reload('kubernetes', 'error');
          },
        });
      } catch (error) {
        // No cluster to talk to is a configuration problem: refuse the policy that asks for it.
        throw new PolicyLoadError([`AUTHZ_CONFIG rbac.kubernetes: ${(error as Error).message}`]);
      }
    } else if (!spec.kubernetes && this.#kube) {
      void this.#kube.close();
      this.#kube = undefined;
      this.#kubeError = undefined;
    }
  }

  #scheduleRebuild(): void {
    if (this.#rebuildScheduled || this.#closed) return;
    this.#rebuildScheduled = true;
    setImmediate(() => {
      this.#rebuildScheduled = false;
      try {
        this.#applyCluster();
      } catch (error) {
        this.#kubeError = `RBAC objects from the cluster not applied: ${(error as Error).message}`;
        this.#log.error({ err: { message: (error as Error).message } }, this.#kubeError);
        this.#events.reload('kubernetes', 'error');
      }
    });
  }

  #applyCluster(): void {
    if (this.#closed || !this.#kube?.synced) return;
    const wasError = this.#kubeError !== undefined;
    this.#kubeError = undefined;
    const spec = this.#active.spec;
    this.#active = { spec, evaluable: this.#evaluable(spec) };
    this.#log.info(
      {
        clusterRoles: this.#active.evaluable.rbac?.roles,
        clusterRoleBindings: this.#active.evaluable.rbac?.bindings,
        recovered: wasError || undefined,
      },
      'RBAC objects from the cluster applied',
    );
    this.#events.reload('kubernetes', 'ok');
  }

  #logLoaded(spec: PolicySpec, message: string): void {
    this.#log.info(
      {
        path: this.#options.path,
        rules: spec.rules.length,
        default: spec.defaultAllow ? 'allow' : 'deny',
        rbacFiles: spec.rbacEnabled ? spec.rbacFiles.length : undefined,
        clusterRoles: spec.rbacEnabled ? spec.fileObjects.roles.length : undefined,
        clusterRoleBindings: spec.rbacEnabled ? spec.fileObjects.bindings.length : undefined,
        kubernetes: spec.kubernetes || undefined,
      },
      message,
    );
  }

  /** Watches the directories of every file the policy is built from. */
  #watch(snapshot: PolicySnapshot): void {
    const dirs = new Set([...snapshot.dirs, ...snapshot.files.map((f) => dirname(f.path))]);
    for (const dir of dirs) {
      if (this.#watchedDirs.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, () => this.#changed());
        watcher.on('error', () => undefined);
        this.#watchers.push(watcher);
        this.#watchedDirs.add(dir);
      } catch {
        // The poll still notices changes.
      }
    }
  }

  #changed(): void {
    if (this.#closed) return;
    if (this.#debounce) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      this.check();
    }, 100);
    this.#debounce.unref();
  }
}
