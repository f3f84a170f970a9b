import type { IncomingMessage, ServerResponse } from 'node:http';
import { whoFragment } from '../audit/auditLog.ts';
import type { Decision } from '../authz/policy.ts';
import type { Deps } from '../deps.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readSubrequest, type SubrequestPolicy } from '../forward/subrequest.ts';
import { requestIdOf } from '../http/requestId.ts';
import type { Valid } from '../session/sessions.ts';
import { logDecision } from './decisionLog.ts';

/** A session's who-part of its audit lines (kept with its hot slot: hotCache.ts auditWho). */
const whoOf = ({ record: { identity } }: Valid): string =>
  whoFragment({ user: identity.user, sub: identity.sub, groups: identity.groups });

/** An allowed decision of the hot path in the audit stream (sampled by AUDIT_ALLOW). */
function auditAllowed(
  deps: HotPathDeps,
  req: IncomingMessage,
  hot: { original: OriginalRequest; session: Valid; decision: Decision },
): void {
  deps.audit.allowed(
    deps.sessions.auditWho(hot.session, whoOf),
    hot.original,
    hot.decision,
    requestIdOf(req),
  );
}

/**
 * The hot path of `/auth` (DESIGN §11), synchronous and allocation-light: a session resolved
 * within its hot window (SessionService.peekHot: 1 s, 30 s while announcements arrive), allowed by the policy, no bearer token. It
 * answers 200 with the session's upstream headers, built once per resolution; anything else —
 * and any error — returns false, and the full path (auth.ts) answers it properly.
 */
export type HotPathDeps = Pick<
  Deps,
  'cookies' | 'trust' | 'sessions' | 'authorizer' | 'upstream' | 'metrics' | 'log' | 'clock' | 'audit'
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
  const hotRequest = (
    req: IncomingMessage,
  ): { original: OriginalRequest; session: Valid; decision: Decision } | undefined => {
    if (req.headers.authorization !== undefined) return undefined;
    const cookie = deps.cookies.readSession(req.headers.cookie);
    if (typeof cookie !== 'string') return undefined;
    const original = readSubrequest(req, deps.trust, subrequest);
    if (original.path.startsWith('/oauth2/')) return undefined;
    const session = deps.sessions.peekHot(cookie, original.host);
    if (session === undefined) return undefined;
    const decision = deps.authorizer.decide(session.record.identity, original);
    if (!decision.allowed) return undefined;
    return { original, session, decision };
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
    if (deps.audit.sampleAllow()) auditAllowed(deps, req, hot);
    return true;
  };
}
