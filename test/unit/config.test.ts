import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_SCOPES, loadConfig, parseDuration } from '../../src/config.ts';
import { createRedisClient } from '../../src/session/redisStore.ts';

const SECRET = 'a-cookie-secret-that-is-long-enough-1234';
const base = {
  OIDC_ISSUER_URL: 'https://dex.example.com/dex',
  OIDC_CLIENT_ID: 'fwd',
  OIDC_CLIENT_SECRET: 'client-secret-value',
  COOKIE_SECRET: SECRET,
};

function problems(env: Record<string, string>, files: Record<string, string> = {}): string[] {
  try {
    loadConfig(env, (p) => {
      const f = files[p];
      if (f === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' });
      return f;
    });
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
}

describe('configuration', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base);
    expect(c.scopes).toEqual(DEFAULT_SCOPES);
    expect(c.cookieName).toBe('_forward_auth');
    expect(c.cookieSecure).toBe(true);
    expect(c.sessionTtlMs).toBe(168 * 3600_000);
    expect(c.refreshSkewMs).toBe(30_000);
    expect(c.port).toBe(4180);
    expect(c.usernameClaim).toBe('email');
    expect(c.groupsClaim).toBe('groups');
    expect(c.redis).toBeUndefined();
    expect(c.upstreamHeaders).toEqual([
      'Authorization',
      'X-Auth-Request-User',
      'X-Auth-Request-Email',
      'X-Auth-Request-Groups',
    ]);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reports every problem at once, naming each setting', () => {
    const found = problems({
      COOKIE_SECRET: 'short',
      PORT: 'x',
      SESSION_TTL: 'forever',
      COOKIE_SECURE: 'maybe',
    });
    expect(found).toEqual(
      expect.arrayContaining([
        'OIDC_ISSUER_URL is required',
        'OIDC_CLIENT_ID is required',
        'OIDC_CLIENT_SECRET is required',
        'COOKIE_SECRET is shorter than 32 characters',
        expect.stringContaining('PORT'),
        expect.stringContaining('SESSION_TTL'),
        expect.stringContaining('COOKIE_SECURE'),
      ]),
    );
  });

  it('refuses an http:// issuer unless OIDC_ALLOW_INSECURE_HTTP is true', () => {
    expect(problems({ ...base, OIDC_ISSUER_URL: 'http://127.0.0.1:5556/' })).toEqual([
      expect.stringContaining('OIDC_ALLOW_INSECURE_HTTP'),
    ]);
    expect(
      problems({ ...base, OIDC_ISSUER_URL: 'http://127.0.0.1:5556/', OIDC_ALLOW_INSECURE_HTTP: 'true' }),
    ).toEqual([]);
  });

  it('reads X_FILE variants and lets them win', () => {
    const c = loadConfig({ ...base, OIDC_CLIENT_SECRET: 'from-env', OIDC_CLIENT_SECRET_FILE: '/s' }, (p) => {
      if (p === '/s') return 'from-file\n';
      throw new Error('no');
    });
    expect(c.clientSecret).toBe('from-file');
  });

  it('reads CONFIG_FILE YAML, with the environment winning', () => {
    const yaml =
      'OIDC_CLIENT_ID: from-yaml\nCOOKIE_NAME: from_yaml\nALLOWED_REDIRECT_DOMAINS: [".example.com", "other.org"]\n';
    const c = loadConfig({ ...base, CONFIG_FILE: '/c.yaml', COOKIE_NAME: 'from_env' }, () => yaml);
    expect(c.clientId).toBe('fwd');
    expect(c.cookieName).toBe('from_env');
    expect(c.allowedRedirectDomains).toEqual(['.example.com', 'other.org']);
  });

  it('names unknown keys in CONFIG_FILE and unreadable X_FILE paths', () => {
    const found = problems(
      { ...base, CONFIG_FILE: '/c.yaml', COOKIE_SECRET_FILE: '/missing' },
      { '/c.yaml': 'NOPE: 1\n' },
    );
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringContaining('unknown setting NOPE'),
        expect.stringContaining('COOKIE_SECRET_FILE /missing'),
      ]),
    );
  });

  it('parses COOKIE_SECRETS for rotation: first seals, all unseal', () => {
    const c = loadConfig({
      ...base,
      COOKIE_SECRET: '',
      COOKIE_SECRETS: `new:${'n'.repeat(32)},old:${'o'.repeat(40)}`,
    });
    expect(c.cookieSecrets.map((s) => s.id)).toEqual(['new', 'old']);
  });

  it('never prints a secret in a problem', () => {
    const secret = 'abcdefghij-short';
    const found = problems({ ...base, COOKIE_SECRETS: `k1:${secret}` });
    expect(found.join('\n')).not.toContain(secret);
    expect(found.join('\n')).toContain('shorter than 32');
  });

  it('understands Redis Sentinel and Cluster settings', () => {
    const s = loadConfig({
      ...base,
      REDIS_SENTINELS: '10.0.0.1:26379, 10.0.0.2:26379',
      REDIS_SENTINEL_NAME: 'mymaster',
    });
    expect(s.redis).toMatchObject({
      mode: 'sentinel',
      name: 'mymaster',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26379 },
      ],
    });
    const c = loadConfig({ ...base, REDIS_CLUSTER_NODES: 'a:7000,b:7001' });
    expect(c.redis).toMatchObject({
      mode: 'cluster',
      nodes: [
        { host: 'a', port: 7000 },
        { host: 'b', port: 7001 },
      ],
    });
    expect(problems({ ...base, REDIS_URL: 'http://x' })).toEqual([expect.stringContaining('REDIS_URL')]);
    expect(problems({ ...base, REDIS_SENTINELS: 'a:1' })).toEqual([
      expect.stringContaining('REDIS_SENTINEL_NAME'),
    ]);
  });

  it('accepts rediss:// and hands ioredis TLS and the password', () => {
    const c = loadConfig({ ...base, REDIS_URL: 'rediss://127.0.0.1:6380/0', REDIS_PASSWORD: 'pw-123456789' });
    expect(c.redis).toMatchObject({
      mode: 'single',
      url: 'rediss://127.0.0.1:6380/0',
      password: 'pw-123456789',
    });
    const client = createRedisClient(c.redis!) as Redis;
    try {
      expect(client.options.tls).toBeDefined();
      expect(client.options.password).toBe('pw-123456789');
      expect(client.options.port).toBe(6380);
    } finally {
      client.disconnect();
    }
  });

  it('parses Go-style durations', () => {
    expect(parseDuration('168h')).toBe(168 * 3600_000);
    expect(parseDuration('1h30m')).toBe(5400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('45')).toBe(45_000);
    expect(parseDuration('1x')).toBeUndefined();
    expect(parseDuration('')).toBeUndefined();
  });
});
