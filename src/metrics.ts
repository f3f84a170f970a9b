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

/** Prometheus metrics (DESIGN §9). One registry per app, so tests can run many apps. */
export function createMetrics(version: string): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'dex_forward_auth_process_' });
  const prefix = 'dex_forward_auth_';
  const decisions = new Counter({
    name: `${prefix}decisions_total`,
    help: 'Forward-auth decisions by outcome.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: `${prefix}decision_duration_seconds`,
    help: 'Time to answer a forward-auth request.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  const refreshes = new Counter({
    name: `${prefix}refreshes_total`,
    help: 'ID-token refreshes by result (ok, terminal, transient, coalesced).',
    labelNames: ['result'],
    registers: [registry],
  });
  const throttled = new Counter({
    name: `${prefix}refresh_throttled_total`,
    help: 'Refreshes not sent to the identity provider because their session had made its calls for the minute.',
    registers: [registry],
  });
  const lockWaits = new Counter({
    name: `${prefix}refresh_lock_waits_total`,
    help: 'Requests that waited for another replica to finish a refresh.',
    registers: [registry],
  });
  const storeErrors = new Counter({
    name: `${prefix}store_errors_total`,
    help: 'Session store (Redis) operations that failed.',
    registers: [registry],
  });
  const providerErrors = new Counter({
    name: `${prefix}provider_errors_total`,
    help: 'Calls to the identity provider that failed: 5xx, network error or timeout (refusals are not errors).',
    labelNames: ['operation'],
    registers: [registry],
  });
  const providerLatency = new Histogram({
    name: `${prefix}provider_request_duration_seconds`,
    help: 'Round trips to the identity provider by operation (discovery, probe, jwks, code, refresh) and result (ok, refused, error).',
    labelNames: ['operation', 'result'],
    buckets: ROUND_TRIP_BUCKETS,
    registers: [registry],
  });
  const redisLatency = new Histogram({
    name: `${prefix}redis_command_duration_seconds`,
    help: 'Round trips to Redis by operation and result (ok, error).',
    labelNames: ['operation', 'result'],
    buckets: ROUND_TRIP_BUCKETS,
    registers: [registry],
  });
  const redisErrors = new Counter({
    name: `${prefix}redis_errors_total`,
    help: 'Redis commands that failed or timed out.',
    labelNames: ['operation'],
    registers: [registry],
  });
  const logins = new Counter({
    name: `${prefix}logins_total`,
    help: 'Login flows by stage (started, completed, failed).',
    labelNames: ['stage', 'code'],
    registers: [registry],
  });
  const degraded = new Gauge({
    name: `${prefix}degraded`,
    help: '1 while the session store is unreachable and sessions run from cookies and local cache.',
    registers: [registry],
  });
  const build = new Gauge({
    name: `${prefix}build_info`,
    help: 'Build information.',
    labelNames: ['version', 'node'],
    registers: [registry],
  });
  const policyReloads = new Counter({
    name: `${prefix}policy_reloads_total`,
    help: 'Policy loads by source (file, kubernetes; authentication: AUTHENTICATION_CONFIG) and result (ok, error: the last good one stays in force).',
    labelNames: ['source', 'result'],
    registers: [registry],
  });
  const policyOk = new Gauge({
    name: `${prefix}policy_last_reload_ok`,
    help: '1 when the last policy load from this source succeeded; 0 while an older policy is in force because of an error.',
    labelNames: ['source'],
    registers: [registry],
  });
  const policyReloadTime = new Gauge({
    name: `${prefix}policy_last_reload_timestamp_seconds`,
    help: 'When the policy from this source was last loaded successfully.',
    labelNames: ['source'],
    registers: [registry],
  });
  build.set({ version, node: process.version }, 1);
  degraded.set(0);
  for (const outcome of ['allow', 'redirect', 'unauthenticated', 'forbidden', 'rate_limited', 'error']) {
    decisions.inc({ outcome }, 0);
  }
  for (const result of ['ok', 'terminal', 'transient', 'coalesced']) refreshes.inc({ result }, 0);
  for (const stage of ['started', 'completed']) logins.inc({ stage, code: '' }, 0);
  for (const operation of ['discovery', 'jwks', 'code', 'refresh']) providerErrors.inc({ operation }, 0);

  // Children bound once: no label hashing on the hot path.
  const decisionCounters = Object.fromEntries(
    (['allow', 'redirect', 'unauthenticated', 'forbidden', 'rate_limited', 'error'] as const).map((o) => [
      o,
      decisions.labels(o),
    ]),
  ) as Record<Outcome, ReturnType<typeof decisions.labels>>;

  return {
    registry,
    decision(outcome, seconds) {
      decisionCounters[outcome].inc();
      latency.observe(seconds);
    },
    refresh(result) {
      refreshes.inc({ result });
    },
    refreshThrottled: () => throttled.inc(),
    lockWait: () => lockWaits.inc(),
    storeError: () => storeErrors.inc(),
    providerError: () => providerErrors.inc({ operation: 'other' }),
    loginStarted: () => logins.inc({ stage: 'started', code: '' }),
    loginCompleted: () => logins.inc({ stage: 'completed', code: '' }),
    loginFailed: (code) => logins.inc({ stage: 'failed', code }),
    setDegraded: (value) => degraded.set(value ? 1 : 0),
    redisCall(operation, seconds, ok) {
      redisLatency.observe({ operation, result: ok ? 'ok' : 'error' }, seconds);
      if (!ok) redisErrors.inc({ operation });
    },
    providerCall(operation, seconds, result) {
      providerLatency.observe({ operation, result }, seconds);
      if (result === 'error') providerErrors.inc({ operation });
    },
    policyReload(source, result) {
      policyReloads.inc({ source, result });
      policyOk.set({ source }, result === 'ok' ? 1 : 0);
      if (result === 'ok') policyReloadTime.set({ source }, Date.now() / 1000);
    },
  };
}
