import type { IncomingMessage } from 'node:http';
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import type { Reply } from '../http/reply.ts';
import { StoreUnavailableError } from '../session/store.ts';

/**
 * OpenID Connect Back-Channel Logout 1.0 receiver (issue 16 item 3): `POST /oauth2/backchannel-logout`
 * with the form field `logout_token`, sent by the provider itself (register this URL as the client's
 * `backchannel_logout_uri`). A valid token (oidc/logoutToken.ts) whose `jti` was not seen before —
 * on any replica: the `jti` is kept in the store — ends the sessions of its `sid` (the provider
 * session each login's ID token named), or with only a `sub`, every session of that user. Answers
 * per spec §2.8: 200 when done, 400 with a JSON `error` for an invalid token or a `jti` seen
 * before (remembered in the store and in each replica's memory, so a Redis that lost its data
 * does not make a used token new), 503 when the store cannot be asked (the provider retries),
 * 413 with `Connection: close` for a form over 16 KiB; never cached.
 */

/** A logout token is a few hundred bytes; the form is refused above this. */
const MAX_FORM_BYTES = 16 * 1024;

export async function backchannelLogout(deps: Deps, req: IncomingMessage): Promise<Reply> {
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]
    ?.trim()
    .toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    return refuse('invalid_request', 'Send logout_token as application/x-www-form-urlencoded.');
  }
  const form = await readForm(req);
  if (form === undefined) {
    // The rest of the body is not read: the connection closes after this answer, not under it.
    return { ...refuse('invalid_request', 'The form is too large.', 413), headers: { connection: 'close' } };
  }
  const token = form.getAll('logout_token');
  if (token.length !== 1 || token[0] === '')
    return refuse('invalid_request', 'Send exactly one logout_token.');
  let claims: Awaited<ReturnType<Deps['oidc']['verifyLogoutToken']>>;
  try {
    claims = await deps.oidc.verifyLogoutToken(token[0] as string);
  } catch (error) {
    if (error instanceof AppError && error.code === 'bad_request') {
      deps.log.info({ reason: error.detail }, 'back-channel logout: invalid logout token refused');
      return refuse('invalid_request', error.publicMessage);
    }
    throw error;
  }
  const first = await firstUse(deps, claims);
  if (first === 'unknown') {
    deps.log.warn('back-channel logout: the store is unreachable, the replay check cannot be made: 503');
    return refuse(
      'temporarily_unavailable',
      'The session store is unreachable; send the logout token again later.',
      503,
    );
  }
  if (!first) {
    deps.log.info('back-channel logout: a logout token used before was refused (jti replay)');
    return refuse('invalid_request', 'This logout token was used before.');
  }
  const ended = claims.sid
    ? await deps.sessions.endBySid(claims.sid)
    : await deps.sessions.endAllForUser(claims.sub as string, 'provider-sub');
  deps.log.info(
    { by: claims.sid ? 'sid' : 'sub', sessions: ended },
    'back-channel logout: the provider ended the sessions',
  );
  return { status: 200, json: { ended } };
}

/** Whether the token's `jti` is new; 'unknown' when the store cannot say (the provider retries). */
async function firstUse(
  deps: Deps,
  claims: { jti: string; acceptedUntil: number },
): Promise<boolean | 'unknown'> {
  try {
    return await deps.sessions.useLogoutTokenOnce(claims.jti, claims.acceptedUntil);
  } catch (error) {
    if (error instanceof StoreUnavailableError) return 'unknown';
    throw error;
  }
}

function refuse(error: string, description: string, status = 400): Reply {
  return { status, json: { error, error_description: description } };
}

function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        // Not destroyed: that would reset the connection under the 413. What else arrives is dropped.
        req.removeAllListeners('data');
        req.resume();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}
