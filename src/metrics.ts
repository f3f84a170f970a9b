import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Outcomes of a forward-auth decision, as counted in metrics and logs. */
export type Outcome = 'allow' | 'redirect' | 'unauthenticated' | 'forbidden' | 'rate_limited' | 'error';

export interface Metrics {
  readonly registry: Registry;
  decision(outcome: Outcome, seconds: number): void;
  refresh(result: 'ok' | 'terminal' | 'transient' | 'coalesced'): void;
  lockWait(): void;
  storeError(): void;
  providerError(): void;
  loginStarted(): void;
  loginCompleted(): void;
  loginFailed(code: string): void;
  setDegraded(degraded: boolean): void;
}

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
    help: 'Calls to the identity provider that failed transiently.',
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
  build.set({ version, node: process.version }, 1);
  degraded.set(0);
  for (const outcome of ['allow', 'redirect', 'unauthenticated', 'forbidden', 'rate_limited', 'error']) {
    decisions.inc({ outcome }, 0);
  }
  for (const result of ['ok', 'terminal', 'transient', 'coalesced']) refreshes.inc({ result }, 0);

  return {
    registry,
    decision(outcome, seconds) {
      decisions.inc({ outcome });
      latency.observe(seconds);
    },
    refresh(result) {
      refreshes.inc({ result });
      if (result === 'transient') providerErrors.inc();
    },
    lockWait: () => lockWaits.inc(),
    storeError: () => storeErrors.inc(),
    providerError: () => providerErrors.inc(),
    loginStarted: () => logins.inc({ stage: 'started', code: '' }),
    loginCompleted: () => logins.inc({ stage: 'completed', code: '' }),
    loginFailed: (code) => logins.inc({ stage: 'failed', code }),
    setDegraded: (value) => degraded.set(value ? 1 : 0),
  };
}
