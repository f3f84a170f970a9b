import { hostname } from 'node:os';
import { type DestinationStream, destination, symbols } from 'pino';
import { isPretty, type Logger, requestContext } from '../log.ts';
import {
  type AuditDecidedBy,
  type AuditEventType,
  type AuditRequest,
  type AuditWho,
  type DecisionEvent,
  decidedFields,
  type EndedVia,
  requestFields,
} from './events.ts';

export type { AuditRequest, AuditWho, DecisionEvent, DecisionOutcome, EndedVia } from './events.ts';

/**
 * The audit stream (AUDIT_LOG, AUDIT_ALLOW; README "Audit log"): JSON lines apart from the logs'
 * levels and settings. `stdout` writes into the logger's own destination (pino's asynchronous
 * SonicBoom on fd 1), so an audit line and a log line are whole lines in the order written and
 * never merged; a file gets an asynchronous SonicBoom of its own (appended, reopened on SIGHUP).
 * No write is synchronous: a request costs one JSON.stringify and a buffered append.
 */

export type AuditTargetSetting =
  | { readonly kind: 'stdout' }
  | { readonly kind: 'off' }
  | { readonly kind: 'file'; readonly path: string };

export interface AuditOptions {
  readonly target: AuditTargetSetting;
  /** The share of allowed decisions written (1: all, 0: none); denials are always written. */
  readonly allowRate: number;
  /** POD_NAME, else the host name. */
  readonly replica?: string | undefined;
  readonly log: Logger;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** What a line is written into: a pino destination (SonicBoom) or any stream with write(). */
interface Sink {
  write(line: string): unknown;
  reopen?(): void;
  end?(): void;
  flushSync?(): void;
}

export interface AuditLog {
  /** Whether an allowed decision is to be written now (the sample); ask before building it. */
  sampleAllow(): boolean;
  decision(event: DecisionEvent): void;
  /**
   * An allowed decision of the hot path, the same line decision() writes from parts made once:
   * `who` is whoFragment() of the session (kept with its hot slot), `decidedBy` one of the
   * authorizer's shared allow decisions (its fields are made once per decision object).
   */
  allowed(who: string, request: AuditRequest, decidedBy: AuditDecidedBy, requestId: string): void;
  login(who: AuditWho, request: AuditRequest): void;
  /** A refresh at the provider (once per refresh, by the replica that made it). */
  refresh(who: AuditWho, outcome: 'ok' | 'refused'): void;
  signOut(who: AuditWho, request: AuditRequest): void;
  /** Sessions ended, by any path. */
  revocation(who: AuditWho, sessions: number, via: EndedVia): void;
  /** Reopens the file (SIGHUP; log rotation by rename). */
  reopen(): void;
  close(): void;
}

/** Writes nothing (AUDIT_LOG=off, and unit tests). */
export const NO_AUDIT: AuditLog = {
  sampleAllow: () => false,
  decision() {},
  allowed() {},
  login() {},
  refresh() {},
  signOut() {},
  revocation() {},
  reopen() {},
  close() {},
};

/** On a terminal (pino-pretty), each line is printed as a log record `audit <event>`, readably. */
function prettySink(log: Logger): Sink {
  return {
    write(lines: string) {
      for (const line of lines.split('\n')) {
        if (line === '') continue;
        const { audit: _audit, time: _time, event, ...fields } = JSON.parse(line) as Record<string, unknown>;
        log.info({ audit: true, ...fields }, `audit ${String(event)}`);
      }
    },
  };
}

function loggerSink(log: Logger): Sink {
  if (isPretty(log)) return prettySink(log);
  const stream = (log as unknown as Record<symbol, DestinationStream | undefined>)[symbols.streamSym];
  return stream ?? process.stdout;
}

function fileSink(path: string, log: Logger): Sink {
  const stream = destination({ dest: path, append: true, sync: false, mkdir: true });
  let warned = false;
  stream.on('error', (error: Error) => {
    if (warned) return;
    warned = true;
    log.error({ path, error: error.message }, 'audit log: cannot write the file');
  });
  return stream;
}

/** Queued lines beyond this many characters are written at once. */
const MAX_PENDING = 64 * 1024;
/** How long a line may wait for the next write. */
const FLUSH_MS = 50;

/** The `,"user":…,"sub":…,"groups":[…]` part of a line ('' for nobody). */
export function whoFragment(who: AuditWho | undefined): string {
  if (who === undefined) return '';
  const json = JSON.stringify({ user: who.user, sub: who.sub, groups: who.groups });
  return json.length > 2 ? `,${json.slice(1, -1)}` : '';
}

export function createAuditLog(options: AuditOptions): AuditLog {
  if (options.target.kind === 'off') return NO_AUDIT;
  const sink =
    options.target.kind === 'file' ? fileSink(options.target.path, options.log) : loggerSink(options.log);
  return new StreamAuditLog(sink, options);
}

class StreamAuditLog implements AuditLog {
  readonly #sink: Sink;
  readonly #rate: number;
  readonly #replicaJson: string;
  readonly #now: () => number;
  readonly #random: () => number;
  /** The file's stream is ours to end; the logger's is not. */
  readonly #owned: boolean;
  #pending = '';
  #scheduled = false;
  #lastNow = Number.NaN;
  #lastTime = '';
  /** The decided fields of each allow decision object (the authorizer shares them). */
  readonly #allowFields = new WeakMap<AuditDecidedBy, string>();

  constructor(sink: Sink, options: AuditOptions) {
    this.#sink = sink;
    this.#owned = options.target.kind === 'file';
    this.#rate = options.allowRate;
    this.#replicaJson = JSON.stringify(options.replica || hostname());
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  sampleAllow(): boolean {
    if (this.#rate >= 1) return true;
    return this.#rate > 0 && this.#random() < this.#rate;
  }

  decision(event: DecisionEvent): void {
    const { request: r, decidedBy: by } = event;
    this.#write('decision', event.who, {
      method: r?.method,
      host: r?.host,
      path: r?.path,
      client: r?.clientIp,
      ...decidedFields(event.outcome, event.status, by, event.reason),
      requestId: event.requestId,
    });
  }

  allowed(who: string, r: AuditRequest, by: AuditDecidedBy, requestId: string): void {
    try {
      let decided = this.#allowFields.get(by);
      if (decided === undefined) {
        decided = `,${JSON.stringify(decidedFields('allow', 200, by, undefined)).slice(1, -1)}`;
        this.#allowFields.set(by, decided);
      }
      const where = `,"method":${JSON.stringify(r.method)},"host":${JSON.stringify(r.host)},"path":${JSON.stringify(r.path)},"client":${JSON.stringify(r.clientIp)}`;
      this.#line('decision', who, `${where}${decided},"requestId":${JSON.stringify(requestId)}`);
    } catch {
      // a broken stream never breaks a request
    }
  }

  login(who: AuditWho, request: AuditRequest): void {
    this.#write('login', who, { ...requestFields(request), ...this.#context() });
  }

  refresh(who: AuditWho, outcome: 'ok' | 'refused'): void {
    this.#write('refresh', who, { outcome, ...this.#context(true) });
  }

  signOut(who: AuditWho, request: AuditRequest): void {
    this.#write('sign-out', who, { ...requestFields(request), ...this.#context() });
  }

  revocation(who: AuditWho, sessions: number, via: EndedVia): void {
    this.#write('revocation', who, { sessions, via, ...this.#context(true) });
  }

  reopen(): void {
    this.#sink.reopen?.();
  }

  close(): void {
    this.#flush();
    try {
      this.#sink.flushSync?.();
    } catch {
      // not open yet, or nothing to flush
    }
    if (this.#owned) this.#sink.end?.();
  }

  /** The ISO time, made once per millisecond (under load, many events share one). */
  #time(): string {
    const now = this.#now();
    if (now !== this.#lastNow) {
      this.#lastNow = now;
      this.#lastTime = new Date(now).toISOString();
    }
    return this.#lastTime;
  }

  /**
   * Lines are gathered for up to FLUSH_MS (or MAX_PENDING characters) and go out as one write:
   * a handful of writes a second however many decisions, each of whole lines.
   */
  #queue(line: string): void {
    this.#pending += line;
    if (this.#pending.length >= MAX_PENDING) this.#flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setTimeout(this.#flushSoon, FLUSH_MS).unref();
    }
  }

  readonly #flushSoon = (): void => {
    this.#scheduled = false;
    this.#flush();
  };

  #flush(): void {
    if (this.#pending === '') return;
    const lines = this.#pending;
    this.#pending = '';
    try {
      this.#sink.write(lines);
    } catch {
      // a broken stream never breaks a request (the file's error handler said it once)
    }
  }

  /** The request being served, if any: its id, and (for events deep in a request) where it went. */
  #context(where = false): Record<string, unknown> {
    const ctx = requestContext.getStore();
    if (!ctx) return {};
    return where
      ? { host: ctx.host, path: ctx.path, requestId: ctx.requestId }
      : { requestId: ctx.requestId };
  }

  /** One line: the fixed head, who, then the event's own fields (JSON.stringify leaves out the unset ones). */
  #write(event: AuditEventType, who: AuditWho | undefined, fields: Record<string, unknown>): void {
    try {
      const rest = JSON.stringify(fields);
      this.#line(event, whoFragment(who), rest.length > 2 ? `,${rest.slice(1, -1)}` : '');
    } catch {
      // a broken stream never breaks a request (the file's error handler said it once)
    }
  }

  /** The line of an event from its who-part and the rest of its fields (each `,"name":value…`). */
  #line(event: AuditEventType, who: string, tail: string): void {
    this.#queue(
      `{"audit":true,"time":"${this.#time()}","event":"${event}","replica":${this.#replicaJson}${who}${tail}}\n`,
    );
  }
}
