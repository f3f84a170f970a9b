import type { IncomingMessage } from 'node:http';
import type { Deps } from '../deps.ts';
import type { OriginalRequest } from '../forward/original.ts';
import type { Reply } from '../http/reply.ts';
import { finishLogin } from './callback.ts';
import { startLogin } from './login.ts';
import { sessionsPage } from './sessionsPage.ts';
import { signOut } from './signOut.ts';

/**
 * `/oauth2/…` on a protected host, forwarded to us by the proxy with the decision (DESIGN §2):
 * start, callback, sign-out and the sessions page are served from the decision itself. Undefined for any other path.
 */
export function serveOAuth2OnHost(
  deps: Deps,
  req: IncomingMessage,
  original: OriginalRequest,
): Promise<Reply> | undefined {
  if (!original.path.startsWith('/oauth2/')) return undefined;
  const cookieHeader = req.headers.cookie;
  switch (original.path) {
    case '/oauth2/start': {
      const rd = new URLSearchParams(original.query).get('rd');
      const target = deps.returnUrls.check(rd, original) ?? `${original.proto}://${original.host}/`;
      return startLogin(deps, original, target, cookieHeader);
    }
    case '/oauth2/callback':
      return finishLogin(deps, original, cookieHeader, req.headers['user-agent']);
    case '/oauth2/sign_out':
      return signOut(deps, original, req.headers, { viaForwardAuth: true });
    case '/oauth2/sessions':
      return sessionsPage(deps, original, req.headers, { viaForwardAuth: true });
    default:
      return undefined;
  }
}
