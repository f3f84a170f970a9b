import { Writable } from 'node:stream';
import type { BuildOptions } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
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
  readonly logs: LogCapture;
}

/**
 * Starts dex-forward-auth in this process on a free loopback port, configured through the same
 * environment variables users set.
 */
export async function startTestService(
  env: Record<string, string>,
  options: { store?: Store; tlsReloadMs?: number; sessionTimings?: BuildOptions['sessionTimings'] } = {},
): Promise<TestService> {
  const config = loadConfig({
    COOKIE_SECRET: TEST_COOKIE_SECRET,
    OIDC_ALLOW_INSECURE_HTTP: 'true',
    COOKIE_SECURE: 'false',
    LOG_LEVEL: 'debug',
    // Every test logs in from 127.0.0.1: the login rate limit is tested on its own (security.test.ts).
    LOGIN_RATE_LIMIT_BURST: '1000',
    PORT: '0',
    ...env,
  });
  const logs = new LogCapture();
  const log = createLogger({ level: config.logLevel, destination: logs });
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
