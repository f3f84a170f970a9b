/**
 * Bare `node:http` plus one ioredis GET per request (session id in clear in the cookie; the
 * stored value is the ID token). BENCH_AUTOPIPELINING=1 turns on ioredis auto-pipelining.
 */
import { cookieValue, headersWith, listen, readSettings, redisClient } from './common.ts';

const settings = readSettings();
const redis = redisClient(settings, process.env['BENCH_AUTOPIPELINING'] === '1');
const unauthorized = { 'Cache-Control': 'no-store', 'Content-Length': '0' };

listen((req, res) => {
  const sid = cookieValue(req.headers.cookie, settings.cookieName);
  if (sid === undefined) {
    res.writeHead(401, unauthorized).end();
    return;
  }
  redis.get(settings.keyPrefix + sid).then(
    (token) => {
      if (token === null) res.writeHead(401, unauthorized).end();
      else res.writeHead(200, headersWith(settings, `Bearer ${token}`)).end();
    },
    () => res.writeHead(503, unauthorized).end(),
  );
}, settings.port);
