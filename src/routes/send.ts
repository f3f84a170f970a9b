import type { Request, Response } from 'express';
import type { Deps } from '../deps.ts';
import { type Reply, writeReply } from '../http/reply.ts';
import { requestIdOf } from '../http/requestId.ts';

/** Writes a Reply from an Express route (pages with the request id, helmet headers, no-store). */
export function replySender(deps: Deps): (req: Request, res: Response, reply: Reply) => void {
  return (req, res, reply) =>
    writeReply(
      res,
      reply,
      req.headers,
      { views: deps.views, pageHeaders: deps.pageHeaders, requestId: requestIdOf(req), log: deps.log },
      req.method,
    );
}
