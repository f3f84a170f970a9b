/**
 * Express 5 + AES-256-GCM cookie unseal (a decipher object per request, as most code does) + one
 * ioredis GET. The cookie is base64url(iv ‖ ciphertext of the session id ‖ tag).
 */
import { createDecipheriv } from 'node:crypto';
import express from 'express';
import { cookieValue, headersWith, listen, readSettings, redisClient } from './common.ts';

const settings = readSettings();
if (settings.aesKey === undefined) throw new Error('BENCH_AES_KEY is not set');
const key = Buffer.from(settings.aesKey, 'hex');
const redis = redisClient(settings, false);
const app = express();

function unseal(value: string): string | undefined {
  const raw = Buffer.from(value, 'base64url');
  if (raw.length < 12 + 16 + 1) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString();
  } catch {
    return undefined;
  }
}

app.get('/auth', async (req, res) => {
  const cookie = cookieValue(req.headers.cookie, settings.cookieName);
  const sid = cookie === undefined ? undefined : unseal(cookie);
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
