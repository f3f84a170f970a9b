import { fileURLToPath } from 'node:url';
import { freePort } from './ports.ts';
import { spawnTracked, type TrackedProcess, tcpAccepts, waitUntil } from './redis.ts';
import { TEST_DEFAULTS } from './service.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServiceProcess {
  readonly url: string;
  readonly port: number;
  /** The process as it runs now (replaced by start()). */
  process(): TrackedProcess;
  /** Stops with a signal (SIGTERM drains, SIGKILL dies); resolves when it has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts again on the same port. */
  start(): Promise<void>;
  /** Everything the process printed (JSON log lines). */
  output(): string;
  close(): Promise<void>;
}

/**
 * dex-forward-auth as a real child process (`src/cli.ts serve`, type-stripped by Node), configured
 * only through its environment: for replica, SIGKILL and SIGTERM tests.
 */
/** The Node flags the service ships with (package.json `start`, Dockerfile, Deployment). */
export const RUNTIME_FLAGS = '--max-semi-space-size=8';

export async function startServiceProcess(
  env: Record<string, string>,
  port?: number,
  options: { fromDist?: boolean; testDefaults?: boolean; nodeFlags?: string } = {},
): Promise<ServiceProcess> {
  // The built service (`npm run build`) is what production runs; tests run the sources directly.
  const fromDist = options.fromDist ?? false;
  const listenPort = port ?? (await freePort());
  // testDefaults: false runs exactly the given settings (a deployment's), nothing of the tests'.
  const defaults = options.testDefaults === false ? {} : { ...TEST_DEFAULTS, LOG_LEVEL: 'info' };
  const fullEnv: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'],
    ...defaults,
    ...env,
    PORT: String(listenPort),
  };
  let proc: TrackedProcess;
  let history = '';
  const spawnIt = async () => {
    proc = spawnTracked(
      process.execPath,
      [
        ...(options.nodeFlags ?? process.env['DFA_NODE_FLAGS'] ?? RUNTIME_FLAGS).split(' ').filter(Boolean),
        ...(fromDist
          ? ['dist/src/cli.js']
          : ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'src/cli.ts']),
        'serve',
      ],
      { name: `dex-forward-auth:${listenPort}`, cwd: ROOT, env: fullEnv },
    );
    await waitUntil('dex-forward-auth to listen', () => tcpAccepts(listenPort), { proc, timeoutMs: 20_000 });
  };
  await spawnIt();
  return {
    url: `http://127.0.0.1:${listenPort}`,
    port: listenPort,
    process: () => proc,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      await proc.stop(signal);
      history += proc.output();
    },
    async start() {
      await spawnIt();
    },
    output: () => history + proc.output(),
    async close() {
      await proc.stop('SIGKILL');
    },
  };
}
