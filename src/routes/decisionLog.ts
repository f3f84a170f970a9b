import type { IncomingMessage } from 'node:http';
import type { OriginalRequest } from '../forward/original.ts';
import { requestIdOf } from '../http/requestId.ts';
import type { Logger } from '../log.ts';
import type { Outcome } from '../metrics.ts';

/** How a decision is counted (metrics) and logged (one debug line per decision, LOG_LEVEL=debug). */

const OUTCOME_BY_STATUS: Record<number, Outcome> = {
  200: 'allow',
  302: 'redirect',
  401: 'unauthenticated',
  403: 'forbidden',
  429: 'rate_limited',
};

export function outcomeOf(status: number): Outcome {
  return OUTCOME_BY_STATUS[status] ?? 'error';
}

export function logDecision(
  log: Logger,
  req: IncomingMessage,
  decision: {
    readonly status: number;
    readonly user: string | undefined;
    readonly original?: OriginalRequest;
  },
): void {
  if (!log.isLevelEnabled('debug')) return;
  const { original } = decision;
  log.debug(
    {
      requestId: requestIdOf(req),
      outcome: outcomeOf(decision.status),
      status: decision.status,
      user: decision.user,
      host: original?.host,
      path: original?.path,
      method: original?.method,
    },
    'decision',
  );
}

/**
 * A request to a decision endpoint that is no forward-auth subrequest (a misconfigured proxy, a
 * curious client): said in the log at most once a minute.
 */
export function refusalLogger(
  log: Logger,
  now: () => number,
): (req: IncomingMessage, detail: string | undefined) => void {
  let last = Number.NEGATIVE_INFINITY;
  return (req, detail) => {
    if (now() - last < 60_000) return;
    last = now();
    log.warn(
      { peer: req.socket.remoteAddress, detail },
      'decision request refused: not a forward-auth subrequest',
    );
  };
}
