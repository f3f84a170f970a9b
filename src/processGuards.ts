import type { Logger } from './log.ts';

/**
 * The last line of defence (issue 11): nothing that escapes a handler, a timer or a library
 * callback may end the process without a word. Requests are guarded where they are served (an
 * error there is answered and logged), so what reaches these handlers is a bug:
 *
 * - an unhandled promise rejection is logged and the process keeps serving: a rejected promise
 *   leaves no half-done work behind it, and Node's default (exit at once) would drop every
 *   in-flight request of the replica;
 * - an uncaught exception is logged (fatal), then the service drains — readiness goes 503,
 *   in-flight requests finish within SHUTDOWN_TIMEOUT — and exits with status 1 for Kubernetes to
 *   restart it: after a synchronous throw nobody knows what state was left half-changed.
 */

export interface ProcessLike {
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  on(event: 'uncaughtException', listener: (error: Error) => void): unknown;
}

export interface ProcessGuardOptions {
  readonly log: Logger;
  /** Drain and exit (called once, on the first uncaught exception). */
  readonly onFatal: () => void;
  readonly target?: ProcessLike;
}

/** What to log of a thrown value: an Error as pino serialises it (type, message, stack), else its text. */
function describe(reason: unknown): Record<string, unknown> {
  return reason instanceof Error ? { err: reason } : { reason: String(reason).slice(0, 500) };
}

export function installProcessGuards(options: ProcessGuardOptions): void {
  const target = options.target ?? process;
  let fatal = false;
  target.on('unhandledRejection', (reason) => {
    options.log.error(describe(reason), 'unhandled promise rejection (kept serving)');
  });
  target.on('uncaughtException', (error) => {
    options.log.fatal(describe(error), 'uncaught exception: draining, then exiting with status 1');
    if (fatal) return;
    fatal = true;
    options.onFatal();
  });
}
