import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { requestContext } from '../log.ts';

/** The request's id: the one being logged under, else a sane X-Request-Id, else a new UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const current = requestContext.getStore();
  if (current) return current.requestId;
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
}
