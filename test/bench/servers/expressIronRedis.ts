/** Express 5 + iron-session `unsealData` of the cookie ({ sid }) + one ioredis GET per request. */
import express from 'express';
import { unsealData } from 'iron-session';
import { cookieValue, headersWith, listen, readSettings, redisClient } from './common.ts';

const settings = readSettings();
const password = settings.ironPassword;
if (password === undefined) throw new Error('BENCH_IRON_PASSWORD is not set');
const redis = redisClient(settings, false);
const app = express();

app.get('/auth', async (req, res) => {
  const cookie = cookieValue(req.headers.cookie, settings.cookieName);
  const data =
    cookie === undefined ? {} : await unsealData<{ sid?: string }>(cookie, { password }).catch(() => ({}));
  const sid = (data as { sid?: string }).sid;
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
