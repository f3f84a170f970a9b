/** Express 5 + one ioredis GET per request; the session id travels in clear (no unseal). */
import express from 'express';
import { cookieValue, headersWith, listen, readSettings, redisClient } from './common.ts';

const settings = readSettings();
const redis = redisClient(settings, false);
const app = express();

app.get('/auth', async (req, res) => {
  const sid = cookieValue(req.headers.cookie, settings.cookieName);
  const token = sid === undefined ? null : await redis.get(settings.keyPrefix + sid).catch(() => null);
  if (token === null) {
    res.set('Cache-Control', 'no-store').status(401).end();
    return;
  }
  res
    .set(headersWith(settings, `Bearer ${token}`))
    .status(200)
    .end();
});

listen(app, settings.port);
