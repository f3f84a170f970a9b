/**
 * The floor for many sessions: bare `node:http` answering each session's own 200 — the headers a
 * real `/auth` 200 carried for that session's cookie (its ID token, its groups), found in a Map by
 * the cookie. What any server answering these sessions must at least do; the many-sessions
 * section reports the service against this and against the one-header `bare.ts`.
 */
import { readFileSync } from 'node:fs';
import { cookieValue, listen } from './common.ts';

const file = process.env['BENCH_SESSION_HEADERS_FILE'];
if (file === undefined) throw new Error('BENCH_SESSION_HEADERS_FILE is not set');
const { cookieName, sessions } = JSON.parse(readFileSync(file, 'utf8')) as {
  cookieName: string;
  sessions: [string, Record<string, string>][];
};
const byCookie = new Map(sessions);

listen((req, res) => {
  const cookie = cookieValue(req.headers.cookie, cookieName);
  const headers = cookie === undefined ? undefined : byCookie.get(cookie);
  if (headers === undefined) {
    res.writeHead(401, { 'Content-Length': '0' });
    res.end();
    return;
  }
  res.writeHead(200, headers);
  res.end();
}, Number(process.env['BENCH_PORT']));
