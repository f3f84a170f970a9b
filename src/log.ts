import { AsyncLocalStorage } from 'node:async_hooks';
import { type DestinationStream, type Logger, type LoggerOptions, pino, symbols } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };

/** What every log line written while serving one request carries (request id, and who/where once known). */
export interface RequestLogContext {
  readonly requestId: string;
  user?: string;
  host?: string;
  path?: string;
  /** What the decision found, for its audit event (src/audit/); never logged as such. */
  decided?: {
    readonly sub?: string;
    readonly groups?: readonly string[];
    /** The authorizer's answer: its step, rule or binding are what the audit event names. */
    readonly by?: {
      readonly source?: string;
      readonly rule?: { index: number; match: string };
      readonly binding?: string;
    };
    readonly reason?: string;
  };
  /** The request was no decision (a page of the service served on the protected host). */
  notDecision?: boolean;
}

/**
 * The request being served, for log lines. Handlers set it once per request; deeper code (login,
 * refresh, store) logs as usual and its lines carry the request id without threading it through.
 */
export const requestContext = new AsyncLocalStorage<RequestLogContext>();

function requestMixin(): Record<string, unknown> {
  const ctx = requestContext.getStore();
  if (!ctx) return {};
  const out: Record<string, unknown> = { requestId: ctx.requestId };
  if (ctx.user !== undefined) out['user'] = ctx.user;
  if (ctx.host !== undefined) out['host'] = ctx.host;
  if (ctx.path !== undefined) out['path'] = ctx.path;
  return out;
}

/**
 * Paths that may carry secrets in any structured log object. pino replaces them with
 * "[redacted]". Code must not log tokens in the first place; this is the second line of defence.
 */
export const REDACT_PATHS = [
  'req.headers.cookie',
  'req.headers.authorization',
  'res.headers["set-cookie"]',
  '*.cookie',
  '*.authorization',
  '*.password',
  '*.secret',
  '*.token',
  '*.idToken',
  '*.id_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.accessToken',
  '*.access_token',
  '*.code',
  '*.clientSecret',
];

/** The pino-pretty destinations (a terminal, the demo); a logger's children write to its one. */
const PRETTY = new WeakSet<object>();

/** Whether `log` (or the logger it is a child of) prints human-readably rather than JSON lines. */
export function isPretty(log: Logger): boolean {
  const stream = (log as unknown as Record<symbol, object | undefined>)[symbols.streamSym];
  return stream !== undefined && PRETTY.has(stream);
}

/**
 * JSON lines (one object per line) for log collectors; `pretty` (main sets it when stdout is a
 * terminal) prints the same records human-readably through pino-pretty, for development.
 */
export function createLogger(
  options: {
    level?: string;
    pretty?: boolean;
    singleLine?: boolean;
    destination?: NodeJS.WritableStream;
  } = {},
): Logger {
  const base: LoggerOptions = {
    level: options.level ?? 'info',
    base: { service: 'dex-forward-auth' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin: requestMixin,
  };
  if (options.pretty) {
    const destination = options.destination ?? process.stdout;
    const pretty = pinoPretty({
      destination,
      sync: true,
      colorize: options.destination === undefined && process.stdout.isTTY === true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,service',
      singleLine: options.singleLine ?? false,
    });
    PRETTY.add(pretty);
    return pino(base, pretty);
  }
  if (options.destination) return pino(base, options.destination as DestinationStream);
  return pino(base);
}

/** A logger that drops everything (and whatever else is written to its destination): for unit tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' }, { write() {} });
}
