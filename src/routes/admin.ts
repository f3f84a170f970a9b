import { hash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { type AdminListener, MIN_ADMIN_TOKEN_LENGTH } from '../config.ts';
import type { Deps } from '../deps.ts';
import type { SessionSummary } from '../session/sessions.ts';
import { sessionJson } from './sessionsPage.ts';

/**
 * The admin API (issue 16 item 2), on ADMIN_PORT only — no route of the pages or decision
 * listeners reaches it. JSON in, JSON out, every answer `Cache-Control: no-store`:
 *
 *   GET    /admin/users/<sub>/sessions              a user's sessions
 *   DELETE /admin/users/<sub>/sessions/<session>    ends one of them (404 when the user has no such)
 *   DELETE /admin/users/<sub>/sessions              ends all of a user's sessions
 *   DELETE /admin/sessions                          ends every session of every user
 *
 * `<sub>` is the user's `sub` claim (percent-encoded), `<session>` an `id` from the list. Callers
 * prove themselves with `Authorization: Bearer <token>` (the token in ADMIN_TOKEN_FILE, read at
 * every call, compared in constant time) and/or a client certificate of ADMIN_TLS_CLIENT_CA_FILE
 * (checked in the TLS handshake). A missing or wrong token is a bare 401; the token is never logged.
 */
export function createAdminApp(deps: Deps, settings: AdminListener): RequestListener {
  const shortTokenWarning = everyMinute();
  return (req, res) => {
    if (!authorized(deps, settings, req, shortTokenWarning)) {
      deps.log.warn({ client: req.socket.remoteAddress }, 'admin API: call without a valid token refused');
      send(
        res,
        401,
        { error: 'unauthorized' },
        { 'WWW-Authenticate': 'Bearer realm="dex-forward-auth admin"' },
      );
      return;
    }
    route(deps, req).then(
      ({ status, json }) => send(res, status, json),
      (error: unknown) => {
        deps.log.warn({ detail: (error as Error).message }, 'admin API: call failed');
        send(res, 503, { error: 'unavailable', message: 'The session store could not be reached; retry.' });
      },
    );
  };
}

function send(
  res: ServerResponse,
  status: number,
  json: unknown,
  headers: Record<string, string> = {},
): void {
  const body = json === undefined ? '' : JSON.stringify(json);
  res.writeHead(status, {
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...(body ? { 'Content-Type': 'application/json; charset=utf-8' } : {}),
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

const digest = (text: string): Buffer => hash('sha256', text, 'buffer');

/** A gate that opens at most once a minute (a warning repeated at every call is rate-limited). */
function everyMinute(): () => boolean {
  let last = Number.NEGATIVE_INFINITY;
  return () => {
    const now = Date.now();
    if (now - last < 60_000) return false;
    last = now;
    return true;
  };
}

/**
 * The bearer token equals the file's (when a token file is configured); the TLS layer did the
 * rest. A file rotated to a token shorter than MIN_ADMIN_TOKEN_LENGTH (a placeholder) admits
 * nobody, with a warning at most once a minute (never the token).
 */
function authorized(
  deps: Deps,
  settings: AdminListener,
  req: IncomingMessage,
  shortTokenWarning: () => boolean,
): boolean {
  if (settings.tokenFile === undefined) return settings.tls?.clientCaFile !== undefined;
  let expected: string;
  try {
    expected = readFileSync(settings.tokenFile, 'utf8').trim();
  } catch (error) {
    deps.log.warn(
      { code: (error as NodeJS.ErrnoException).code },
      'admin API: ADMIN_TOKEN_FILE cannot be read',
    );
    return false;
  }
  if (expected.length < MIN_ADMIN_TOKEN_LENGTH) {
    if (shortTokenWarning()) {
      deps.log.warn(
        { length: expected.length, minimum: MIN_ADMIN_TOKEN_LENGTH },
        'admin API: ADMIN_TOKEN_FILE holds a token too short to be accepted; every call is refused',
      );
    }
    return false;
  }
  const header = req.headers.authorization;
  const presented = typeof header === 'string' && /^Bearer /i.test(header) ? header.slice(7).trim() : '';
  if (expected.length === 0 || presented.length === 0) return false;
  return timingSafeEqual(digest(presented), digest(expected));
}

interface Answer {
  readonly status: number;
  readonly json: unknown;
}

const notFound: Answer = { status: 404, json: { error: 'not_found' } };

async function route(deps: Deps, req: IncomingMessage): Promise<Answer> {
  const path = (req.url ?? '/').split('?')[0] as string;
  const method = req.method ?? 'GET';
  const sessions = deps.sessions;
  if (path === '/admin/sessions') {
    if (method !== 'DELETE') return methodNotAllowed('DELETE');
    const ended = await sessions.endAll();
    deps.log.info({ ended }, 'admin API: every session ended');
    return { status: 200, json: { ended } };
  }
  const match = /^\/admin\/users\/([^/]+)\/sessions(?:\/([^/]+))?$/.exec(path);
  if (!match) return notFound;
  const sub = decode(match[1] as string);
  const session = match[2] === undefined ? undefined : decode(match[2]);
  if (sub === undefined || sub === '' || session === '') {
    return {
      status: 400,
      json: { error: 'bad_request', message: 'The user or session is not a valid path segment.' },
    };
  }
  if (session !== undefined) {
    if (method !== 'DELETE') return methodNotAllowed('DELETE');
    if (!(await sessions.end({ sub, session }))) return notFound;
    deps.log.info({ sub }, 'admin API: one session ended');
    return { status: 200, json: { ended: 1 } };
  }
  if (method === 'GET' || method === 'HEAD') {
    return { status: 200, json: { sub, sessions: (await sessions.listForUser(sub)).map(summary) } };
  }
  if (method !== 'DELETE') return methodNotAllowed('GET, DELETE');
  const ended = await sessions.endAllForUser(sub);
  deps.log.info({ sub, ended }, 'admin API: every session of a user ended');
  return { status: 200, json: { ended } };
}

function methodNotAllowed(allow: string): Answer {
  return { status: 405, json: { error: 'method_not_allowed', allow } };
}

function decode(segment: string | undefined): string | undefined {
  if (segment === undefined) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function summary(s: SessionSummary) {
  return { ...sessionJson(s), providerSid: s.providerSid ?? null };
}
