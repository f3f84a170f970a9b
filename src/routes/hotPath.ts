import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../deps.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readSubrequest, type SubrequestPolicy } from '../forward/subrequest.ts';
import type { Valid } from '../session/sessions.ts';
import { logDecision } from './decisionLog.ts';

/**
 * The hot path of `/auth` (DESIGN §11), synchronous and allocation-light: a session resolved
 * within the last second (SessionService.peekHot), allowed by the policy, no bearer token. It
 * answers 200 with the session's upstream headers, built once per resolution; anything else —
 * and any error — returns false, and the full path (auth.ts) answers it properly.
 */
export type HotPathDeps = Pick<
  Deps,
  'cookies' | 'trust' | 'sessions' | 'authorizer' | 'upstream' | 'metrics' | 'log' | 'clock'
>;

export type HotPath = (req: IncomingMessage, res: ServerResponse, started: number) => boolean;

export function createHotPath(deps: HotPathDeps, subrequest: SubrequestPolicy): HotPath {
  const headersOf = (session: Valid) =>
    deps.sessions.replyHeaders(session, () => {
      const flat: (string | readonly string[])[] = ['Cache-Control', 'no-store', 'Content-Length', '0'];
      const plan = deps.upstream.plan({ identity: session.record.identity, token: session.record.idToken });
      for (const [name, value] of Object.entries(plan)) flat.push(name, value);
      if (session.setCookie) {
        const maxAge = (session.sessionEnd - deps.clock.now()) / 1000;
        flat.push('Set-Cookie', deps.cookies.set(deps.cookies.session, session.setCookie, maxAge));
      }
      return flat;
    });

  /** The request, when it may be answered from the hot cache. */
  const hotRequest = (req: IncomingMessage): { original: OriginalRequest; session: Valid } | undefined => {
    if (req.headers.authorization !== undefined) return undefined;
    const cookie = deps.cookies.readSession(req.headers.cookie);
    if (typeof cookie !== 'string') return undefined;
    const original = readSubrequest(req, deps.trust, subrequest);
    if (original.path.startsWith('/oauth2/')) return undefined;
    const session = deps.sessions.peekHot(cookie, original.host);
    if (session === undefined) return undefined;
    if (!deps.authorizer.decide(session.record.identity, original).allowed) return undefined;
    return { original, session };
  };

  return (req, res, started) => {
    let hot: ReturnType<typeof hotRequest>;
    try {
      hot = hotRequest(req);
    } catch {
      return false;
    }
    if (hot === undefined) return false;
    // A list of [name, value, …]: Node writes one line per pair, repeated names included.
    res.writeHead(200, headersOf(hot.session) as unknown as string[]);
    res.end();
    deps.metrics.decision('allow', (performance.now() - started) / 1000);
    logDecision(deps.log, req, {
      status: 200,
      user: hot.session.record.identity.user,
      original: hot.original,
    });
    return true;
  };
}
