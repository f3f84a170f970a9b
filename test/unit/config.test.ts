import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  cookieSecretProblem,
  DEFAULT_SCOPES,
  inspectConfig,
  loadConfig,
  parseDuration,
  SETTINGS,
  suggestionsFor,
} from '../../src/config.ts';
import { ProxyTrust } from '../../src/forward/trust.ts';
import { preflight } from '../../src/preflight.ts';
import { createRedisClient } from '../../src/session/redisStore.ts';
import { TEST_COOKIE_SECRET } from '../support/service.ts';

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
        expect.stringMatching(/^OIDC_CLIENT_SECRET is required/),
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
      COOKIE_SECRETS: 'new:Hq8vN2pLx7RkT4mWc9ZbY3sJd6FgA1eU,old:oP5tK8wQ2nV7xR4cM9bL3zH6jD1fG0sAyE',
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

  it('SESSION_IDLE_TIMEOUT: 12h by default, 0 turns it off, less than a second is refused', () => {
    expect(loadConfig(base).sessionIdleTimeoutMs).toBe(12 * 3_600_000);
    expect(loadConfig({ ...base, SESSION_IDLE_TIMEOUT: '0' }).sessionIdleTimeoutMs).toBe(0);
    expect(loadConfig({ ...base, SESSION_IDLE_TIMEOUT: '30m' }).sessionIdleTimeoutMs).toBe(1_800_000);
    expect(problems({ ...base, SESSION_IDLE_TIMEOUT: '500ms' }).join('\n')).toContain(
      'SESSION_IDLE_TIMEOUT must be at least 1s',
    );
    expect(problems({ ...base, SESSION_IDLE_TIMEOUT: 'soon' }).join('\n')).toContain('SESSION_IDLE_TIMEOUT');
  });

  it("BEARER_AUDIENCES: unset is no bearer pass-through; the gateway's own client id is refused", () => {
    expect(loadConfig(base).bearerAudiences).toEqual([]);
    expect(loadConfig({ ...base, BEARER_AUDIENCES: 'kubernetes' }).bearerAudiences).toEqual(['kubernetes']);
    expect(problems({ ...base, BEARER_AUDIENCES: 'kubernetes,fwd' }).join('\n')).toContain(
      'BEARER_AUDIENCES must not contain OIDC_CLIENT_ID',
    );
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

describe('problems reported once, all together', () => {
  const files = {
    '/etc/dfa/config.yaml': 'OIDC_ISSUER: https://dex.example.com/dex\nSESSION_TTL: forever\n',
    '/etc/dfa/authz.yaml': 'default: sometimes\nrules: [{ host: "bad host" }]\n',
  };
  const readFile = (p: string): string => {
    const f = (files as Record<string, string>)[p];
    if (f === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' });
    return f;
  };

  it('lists the environment, CONFIG_FILE, X_FILE and a broken AUTHZ_CONFIG in one report', () => {
    const { config, problems } = preflight(
      {
        ...base,
        CONFIG_FILE: '/etc/dfa/config.yaml',
        OIDC_CLIENT_SECRET_FILE: '/run/secrets/missing',
        COOKIE_SECURE: 'maybe',
        AUTHZ_CONFIG: '/etc/dfa/authz.yaml',
      },
      readFile,
    );
    expect(config).toBeUndefined();
    expect(problems).toEqual(
      expect.arrayContaining([
        'COOKIE_SECURE must be true or false, got "maybe"',
        expect.stringMatching(
          /^CONFIG_FILE \/etc\/dfa\/config\.yaml: unknown setting OIDC_ISSUER \(did you mean OIDC_ISSUER_URL\?\)$/,
        ),
        expect.stringContaining('SESSION_TTL must be a duration'),
        'OIDC_CLIENT_SECRET_FILE /run/secrets/missing: cannot be read (ENOENT)',
        expect.stringMatching(/^AUTHZ_CONFIG \/etc\/dfa\/authz\.yaml: default/),
        expect.stringMatching(/^AUTHZ_CONFIG \/etc\/dfa\/authz\.yaml: rules\[0\]\.host/),
      ]),
    );
  });

  it('checks the policy file even when it is the only problem, and passes a good one', () => {
    expect(preflight({ ...base, AUTHZ_CONFIG: '/etc/dfa/authz.yaml' }, readFile).problems).toEqual([
      expect.stringContaining('AUTHZ_CONFIG /etc/dfa/authz.yaml: default'),
      expect.stringContaining('AUTHZ_CONFIG /etc/dfa/authz.yaml: rules[0].host'),
    ]);
    const good = (p: string) => (p === '/ok.yaml' ? 'default: deny\nrules: []\n' : readFile(p));
    const result = preflight({ ...base, AUTHZ_CONFIG: '/ok.yaml' }, good);
    expect(result.problems).toEqual([]);
    expect(result.config?.authzConfig).toBe('/ok.yaml');
  });

  it('reports unreadable files named by settings with the rest: caFile, service-account token, AUTHZ_KUBECONFIG', () => {
    const found = problems({
      ...base,
      PORT: 'x',
      KUBE_CLUSTERS: '[{name: prod, server: "https://k.example.com", caFile: /ca.pem}]',
      UPSTREAM_AUTH: 'impersonate',
      SERVICE_ACCOUNT_TOKEN_PATH: '/token',
      AUTHZ_KUBECONFIG: '/kubeconfig',
    });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringContaining('PORT must be a port number'),
        'KUBE_CLUSTERS prod: caFile /ca.pem cannot be read',
        expect.stringContaining('SERVICE_ACCOUNT_TOKEN_PATH /token cannot be read (ENOENT)'),
        'AUTHZ_KUBECONFIG /kubeconfig cannot be read (ENOENT)',
      ]),
    );
  });
});

describe('names that look like settings', () => {
  it('stop start-up with a "did you mean" when an environment name is a near miss of a setting', () => {
    const found = problems({
      ...base,
      OIDC_ISSUER: 'https://dex.example.com/dex',
      COOKIE_SECRETT: 'abc',
      REDIS_SENTINEL: 'a:1',
      DFA_LOG_LEVEL: 'debug',
      oidc_client_id: 'x',
      OIDC_CLIENT_SECRETT_FILE: '/s',
    });
    expect(found).toEqual(
      expect.arrayContaining([
        'OIDC_ISSUER is not a setting (did you mean OIDC_ISSUER_URL?)',
        expect.stringMatching(/^COOKIE_SECRETT is not a setting \(did you mean COOKIE_SECRET\b/),
        'REDIS_SENTINEL is not a setting (did you mean REDIS_SENTINELS?)',
        'DFA_LOG_LEVEL is not a setting (did you mean LOG_LEVEL?)',
        'oidc_client_id is not a setting (did you mean OIDC_CLIENT_ID?)',
        'OIDC_CLIENT_SECRETT_FILE is not a setting (did you mean OIDC_CLIENT_SECRET_FILE?)',
      ]),
    );
    expect(found.join('\n')).not.toContain('abc');
  });

  it('warn about names that only start like ours, and never mention unrelated or Kubernetes service-link names', () => {
    const result = inspectConfig({
      ...base,
      PATH: '/usr/bin',
      HOME: '/root',
      NODE_OPTIONS: '--max-old-space-size=192',
      REDIS_SERVICE_HOST: '10.0.0.1',
      REDIS_PORT: 'tcp://10.0.0.1:6379',
      REDIS_PORT_6379_TCP_ADDR: '10.0.0.1',
      LOG_FORMAT: 'json',
    });
    expect(result.problems).toEqual([]);
    expect(result.config).toBeDefined();
    expect(result.warnings).toEqual(['LOG_FORMAT is not a setting of dex-forward-auth and is ignored']);
  });

  it('suggest the setting for an unknown CONFIG_FILE key', () => {
    const found = problems(
      { ...base, CONFIG_FILE: '/c.yaml' },
      { '/c.yaml': 'cookie_domian: .example.com\n' },
    );
    expect(found).toEqual([
      'CONFIG_FILE /c.yaml: unknown setting cookie_domian (did you mean COOKIE_DOMAIN?)',
    ]);
  });

  it('rank suggestions: swapped words, a missing word, an extra letter', () => {
    expect(suggestionsFor('OIDC_CLAIM_USERNAME')).toEqual(['OIDC_USERNAME_CLAIM']);
    expect(suggestionsFor('AUTHZ_CONF')).toEqual(['AUTHZ_CONFIG']);
    expect(suggestionsFor('COOKIE_SECRETT')[0]).toBe('COOKIE_SECRET');
    expect(suggestionsFor('OIDC_CLIENT')).toEqual([
      'OIDC_CLIENT_ID',
      'OIDC_CLIENT_SECRET',
      'OIDC_CLIENT_PRIVATE_KEY',
    ]);
    expect(suggestionsFor('SESSION_SECRET')).toEqual([]);
  });
});

describe('COOKIE_DOMAIN', () => {
  it.each([
    ['com', 'single-label'],
    ['.localhost', 'single-label'],
    ['.co.uk', 'public suffix (co.uk'],
    ['co.uk', 'public suffix'],
    ['.github.io', 'public suffix (github.io'],
    ['.s3.amazonaws.com', 'public suffix'],
  ])('refuses %s at start-up (%s)', (domain, reason) => {
    expect(problems({ ...base, COOKIE_DOMAIN: domain })).toEqual([expect.stringContaining(reason)]);
  });

  it.each([
    '.example.com',
    'example.com',
    '.mgmt.example.co.uk',
    '.team.github.io',
    '.apps.localhost',
    '127.0.0.1',
  ])('accepts %s', (domain) => {
    expect(loadConfig({ ...base, COOKIE_DOMAIN: domain }).cookieDomain).toBe(domain);
  });
});

describe('cookie secrets', () => {
  it.each([
    ['32 times the same letter', 'a'.repeat(32)],
    ['two letters in runs', 'aaaabbbb'.repeat(4)],
    ['a run of letters in order', 'abcdefghijklmnopqrstuvwxyz012345'],
    ['a repeated word', 'passwordpasswordpasswordpassword'],
    ['a repeated passphrase', 'correcthorsebatterystaple'.repeat(2)],
  ])('refuses %s at start-up, without printing it', (_, secret) => {
    const envs: Record<string, string>[] = [
      { COOKIE_SECRET: secret },
      { COOKIE_SECRETS: `v2:${secret}`, COOKIE_SECRET: '' },
    ];
    for (const env of envs) {
      const found = problems({ ...base, ...env });
      expect(found).toEqual([expect.stringMatching(/^COOKIE_SECRETS? (secret "v2" )?looks weak/)]);
      expect(found.join('\n')).not.toContain(secret);
    }
  });

  it('accepts random secrets of 32+ characters, hex included, and the test and demo secrets', () => {
    for (let i = 0; i < 200; i++) {
      expect(cookieSecretProblem('S', randomBytes(16).toString('hex'))).toBeUndefined();
      expect(cookieSecretProblem('S', randomBytes(32).toString('base64'))).toBeUndefined();
    }
    for (const secret of [SECRET, TEST_COOKIE_SECRET, 'demo-cookie-secret-0123456789-abcdefghij']) {
      expect(cookieSecretProblem('S', secret)).toBeUndefined();
    }
  });
});

describe('TRUSTED_PROXIES', () => {
  it('defaults to loopback only: no private range is believed unless configured', () => {
    expect(loadConfig(base).trustedProxies).toEqual(['127.0.0.0/8', '::1/128']);
    const trust = new ProxyTrust(loadConfig(base).trustedProxies);
    expect(trust.isTrusted('127.0.0.1')).toBe(true);
    expect(trust.isTrusted('::1')).toBe(true);
    for (const pod of ['10.42.0.7', '172.16.3.4', '192.168.1.10', 'fd00::1'])
      expect(trust.isTrusted(pod)).toBe(false);
    expect(loadConfig({ ...base, TRUSTED_PROXIES: '10.42.0.0/16' }).trustedProxies).toEqual(['10.42.0.0/16']);
  });
});

describe('the one settings table', () => {
  it('fills every Config field from its row, and the rules fill the rest', () => {
    const config = loadConfig(base) as unknown as Record<string, unknown>;
    const fields = SETTINGS.flatMap((s) => ('field' in s ? [s.field] : []));
    const derived = [
      'cookieSecrets',
      'redis',
      'loginRateLimit',
      'loginLoop',
      'bearerAudiences',
      'kubeClusters',
      'decisionListener',
      'adminListener',
    ];
    expect(Object.keys(config).sort()).toEqual([...fields, ...derived].sort());
    expect(new Set(fields).size).toBe(fields.length);
  });
});
