import { Writable } from 'node:stream';
import type { BuildOptions } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { type RunningService, startService } from '../../src/main.ts';
import type { Store } from '../../src/session/store.ts';

export const TEST_COOKIE_SECRET = 'test-cookie-secret-0123456789abcdef-XYZ';

/** Every log line the service wrote, for assertions (and for proving no secret is ever logged). */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) this.lines.push(line);
    done();
  }
  get text(): string {
    return this.lines.join('\n');
  }
  records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export interface TestService extends RunningService {
  /** What it logged (empty when a `log` of its own was given). */
  readonly logs: LogCapture;
}

/** The settings every test service starts with unless told otherwise (a deployment's own do not). */
export const TEST_DEFAULTS: Readonly<Record<string, string>> = {
  COOKIE_SECRET: TEST_COOKIE_SECRET,
  OIDC_ALLOW_INSECURE_HTTP: 'true',
  COOKIE_SECURE: 'false',
  // Every test logs in from 127.0.0.1: the login rate limit is tested on its own (security.test.ts).
  LOGIN_RATE_LIMIT_BURST: '1000',
};

export interface TestServiceOptions {
  readonly store?: Store;
  readonly tlsReloadMs?: number;
  readonly sessionTimings?: BuildOptions['sessionTimings'];
  /** false: exactly the given settings, none of TEST_DEFAULTS (the demo, a deployment's). */
  readonly testDefaults?: boolean;
  /** Log here instead of into `logs` (the demo's readable lines). */
  readonly log?: Logger;
}

/**
 * Starts dex-forward-auth in this process on a loopback port (a free one unless PORT says),
 * configured through the same environment variables users set.
 */
export async function startTestService(
  env: Record<string, string>,
  options: TestServiceOptions = {},
): Promise<TestService> {
  const defaults = options.testDefaults === false ? {} : { ...TEST_DEFAULTS, LOG_LEVEL: 'debug' };
  const config = loadConfig({ ...defaults, PORT: '0', ...env });
  const logs = new LogCapture();
  const log = options.log ?? createLogger({ level: config.logLevel, destination: logs });
  const service = await startService(config, {
    log,
    host: '127.0.0.1',
    drainMs: 2_000,
    ...(options.store ? { store: options.store } : {}),
    ...(options.sessionTimings ? { sessionTimings: options.sessionTimings } : {}),
    ...(options.tlsReloadMs ? { tlsReloadMs: options.tlsReloadMs } : {}),
  });
  return Object.assign(service, { logs });
}
