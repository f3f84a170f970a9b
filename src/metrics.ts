import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Outcomes of a forward-auth decision, as counted in metrics and logs. */
export type Outcome = 'allow' | 'redirect' | 'unauthenticated' | 'forbidden' | 'rate_limited' | 'error';

export interface Metrics {
  readonly registry: Registry;
  decision(outcome: Outcome, seconds: number): void;
  refresh(result: 'ok' | 'terminal' | 'transient' | 'coalesced'): void;
  /** A refresh not sent because its session had used its provider calls for the minute. */
  refreshThrottled(): void;
  lockWait(): void;
  storeError(): void;
  providerError(): void;
  loginStarted(): void;
  loginCompleted(): void;
  loginFailed(code: string): void;
  setDegraded(degraded: boolean): void;
  /** One Redis command's round trip (ok: answered; else failed or timed out). */
  redisCall(operation: string, seconds: number, ok: boolean): void;
  /** One HTTP round trip to the identity provider. */
  providerCall(operation: ProviderOperation, seconds: number, result: ProviderResult): void;
  /**
   * An AUTHZ_CONFIG reload (file), a change of the watched cluster RBAC objects (kubernetes), or
   * an AUTHENTICATION_CONFIG reload (authentication).
   */
  policyReload(source: 'file' | 'kubernetes' | 'authentication', result: 'ok' | 'error'): void;
}

/** Calls to the identity provider: discovery document (once, then re-read as a reachability probe), JWKS, token endpoint (code or refresh grant). */
export type ProviderOperation = 'discovery' | 'probe' | 'jwks' | 'code' | 'refresh' | 'other';
/** ok: 2xx/3xx; refused: 4xx (the provider said no); error: 5xx, network error or timeout. */
export type ProviderResult = 'ok' | 'refused' | 'error';

/** Latency buckets for network round trips (Redis, Dex), in seconds. */
const ROUND_TRIP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type MetricKind = 'counter' | 'gauge' | 'histogram';

interface MetricSpec {
  readonly kind: MetricKind;
  /** After the prefix `dex_forward_auth_`. */
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
  readonly buckets?: readonly number[];
}

/** Every metric but the process defaults, in registration (exposition) order. A declarative table. */
const METRIC_SPECS = {
  decisions: {
    kind: 'counter',
    name: 'decisions_total',
    help: 'Forward-auth decisions by outcome.',
    labelNames: ['outcome'],
  },
  latency: {
    kind: 'histogram',
    name: 'decision_duration_seconds',
    help: 'Time to answer a forward-auth request.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
  },
  refreshes: {
    kind: 'counter',
    name: 'refreshes_total',
    help: 'ID-token refreshes by result (ok, terminal, transient, coalesced).',
    labelNames: ['result'],
  },
  throttled: {
    kind: 'counter',
    name: 'refresh_throttled_total',
    help: 'Refreshes not sent to the identity provider because their session had made its calls for the minute.',
  },
  lockWaits: {
    kind: 'counter',
    name: 'refresh_lock_waits_total',
    help: 'Requests that waited for another replica to finish a refresh.',
  },
  storeErrors: {
    kind: 'counter',
    name: 'store_errors_total',
    help: 'Session store (Redis) operations that failed.',
  },
  providerErrors: {
    kind: 'counter',
    name: 'provider_errors_total',
    help: 'Calls to the identity provider that failed: 5xx, network error or timeout (refusals are not errors).',
    labelNames: ['operation'],
  },
  providerLatency: {
    kind: 'histogram',
    name: 'provider_request_duration_seconds',
    help: 'Round trips to the identity provider by operation (discovery, probe, jwks, code, refresh) and result (ok, refused, error).',
    labelNames: ['operation', 'result'],
    buckets: ROUND_TRIP_BUCKETS,
  },
  redisLatency: {
    kind: 'histogram',
    name: 'redis_command_duration_seconds',
    help: 'Round trips to Redis by operation and result (ok, error).',
    labelNames: ['operation', 'result'],
    buckets: ROUND_TRIP_BUCKETS,
  },
  redisErrors: {
    kind: 'counter',
    name: 'redis_errors_total',
    help: 'Redis commands that failed or timed out.',
    labelNames: ['operation'],
  },
  logins: {
    kind: 'counter',
    name: 'logins_total',
    help: 'Login flows by stage (started, completed, failed).',
    labelNames: ['stage', 'code'],
  },
  degraded: {
    kind: 'gauge',
    name: 'degraded',
    help: '1 while the session store is unreachable and sessions run from cookies and local cache.',
  },
  build: {
    kind: 'gauge',
    name: 'build_info',
    help: 'Build information.',
    labelNames: ['version', 'node'],
  },
  policyReloads: {
    kind: 'counter',
    name: 'policy_reloads_total',
    help: 'Policy loads by source (file, kubernetes; authentication: AUTHENTICATION_CONFIG) and result (ok, error: the last good one stays in force).',
    labelNames: ['source', 'result'],
  },
  policyOk: {
    kind: 'gauge',
    name: 'policy_last_reload_ok',
    help: '1 when the last policy load from this source succeeded; 0 while an older policy is in force because of an error.',
    labelNames: ['source'],
  },
  policyReloadTime: {
    kind: 'gauge',
    name: 'policy_last_reload_timestamp_seconds',
    help: 'When the policy from this source was last loaded successfully.',
    labelNames: ['source'],
  },
} as const satisfies Record<string, MetricSpec>;

type Specs = typeof METRIC_SPECS;
type Built<S extends MetricSpec> = S['kind'] extends 'counter'
  ? Counter
  : S['kind'] extends 'gauge'
    ? Gauge
    : Histogram;
type Instruments = { readonly [K in keyof Specs]: Built<Specs[K]> };

const OUTCOMES = ['allow', 'redirect', 'unauthenticated', 'forbidden', 'rate_limited', 'error'] as const;

/** One prom-client metric of the table, registered in `registry`. */
function instrument(spec: MetricSpec, registry: Registry): Counter | Gauge | Histogram {
  const config = {
    name: `dex_forward_auth_${spec.name}`,
    help: spec.help,
    ...(spec.labelNames ? { labelNames: spec.labelNames } : {}),
    registers: [registry],
  };
  if (spec.kind === 'counter') return new Counter(config);
  if (spec.kind === 'gauge') return new Gauge(config);
  return new Histogram({ ...config, ...(spec.buckets ? { buckets: [...spec.buckets] } : {}) });
}

/** The table's metrics, built in its order and by its keys. */
function instruments(registry: Registry): Instruments {
  const built = Object.entries(METRIC_SPECS).map(([key, spec]) => [key, instrument(spec, registry)]);
  return Object.fromEntries(built) as Instruments;
}

/** Values present from the start: build info, not degraded, and zeros for the series dashboards expect. */
function seed(m: Instruments, version: string): void {
  m.build.set({ version, node: process.version }, 1);
  m.degraded.set(0);
  for (const outcome of OUTCOMES) m.decisions.inc({ outcome }, 0);
  for (const result of ['ok', 'terminal', 'transient', 'coalesced']) m.refreshes.inc({ result }, 0);
  for (const stage of ['started', 'completed']) m.logins.inc({ stage, code: '' }, 0);
  for (const operation of ['discovery', 'jwks', 'code', 'refresh']) m.providerErrors.inc({ operation }, 0);
}

/** Prometheus metrics (DESIGN §9). One registry per app, so tests can run many apps. */
export function createMetrics(version: string): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'dex_forward_auth_process_' });
  const m = instruments(registry);
  seed(m, version);
  // Children bound once: no label hashing on the hot path.
  const decisionCounters = Object.fromEntries(OUTCOMES.map((o) => [o, m.decisions.labels(o)])) as Record<
    Outcome,
    ReturnType<Counter['labels']>
  >;

  return {
    registry,
    decision(outcome, seconds) {
      decisionCounters[outcome].inc();
      m.latency.observe(seconds);
    },
    refresh(result) {
      m.refreshes.inc({ result });
    },
    refreshThrottled: () => m.throttled.inc(),
    lockWait: () => m.lockWaits.inc(),
    storeError: () => m.storeErrors.inc(),
    providerError: () => m.providerErrors.inc({ operation: 'other' }),
    loginStarted: () => m.logins.inc({ stage: 'started', code: '' }),
    loginCompleted: () => m.logins.inc({ stage: 'completed', code: '' }),
    loginFailed: (code) => m.logins.inc({ stage: 'failed', code }),
    setDegraded: (value) => m.degraded.set(value ? 1 : 0),
    redisCall(operation, seconds, ok) {
      m.redisLatency.observe({ operation, result: ok ? 'ok' : 'error' }, seconds);
      if (!ok) m.redisErrors.inc({ operation });
    },
    providerCall(operation, seconds, result) {
      m.providerLatency.observe({ operation, result }, seconds);
      if (result === 'error') m.providerErrors.inc({ operation });
    },
    policyReload(source, result) {
      m.policyReloads.inc({ source, result });
      m.policyOk.set({ source }, result === 'ok' ? 1 : 0);
      if (result === 'ok') m.policyReloadTime.set({ source }, Date.now() / 1000);
    },
  };
}
