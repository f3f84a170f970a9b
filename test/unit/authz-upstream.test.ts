import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ServiceAccountToken } from '../../src/authz/impersonation.ts';
import { boundedGroups, createUpstreamHeaderPlan } from '../../src/authz/upstream.ts';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { AppError } from '../../src/errors.ts';
import { authenticateBearer, bearerToken, claimsOurIssuer } from '../../src/identity/bearer.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger } from '../../src/log.ts';

/** Upstream headers (ID token or impersonation), the groups bound, and the bearer pre-checks. */

const NAMING = { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: 'oidc:' };
const alice = identityFromClaims(
  { sub: 'a', email: 'alice@example.com', email_verified: true, groups: ['admins', 'engineering'] },
  NAMING,
);
const DEFAULT_HEADERS = [
  'Authorization',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
];

describe('upstream headers', () => {
  it('id-token mode: the token as Authorization, user, email, groups; no Impersonate-Group ever', () => {
    const plan = createUpstreamHeaderPlan({
      config: {
        upstreamHeaders: [...DEFAULT_HEADERS, 'Impersonate-User', 'Impersonate-Group', 'X-Custom'],
        upstreamAuth: 'id-token',
        upstreamGroupsMaxBytes: 8000,
      },
    });
    expect(plan({ identity: alice, token: 'the.id.token' })).toEqual({
      Authorization: 'Bearer the.id.token',
      'X-Auth-Request-User': 'alice@example.com',
      'X-Auth-Request-Email': 'alice@example.com',
      'X-Auth-Request-Groups': 'oidc:admins,oidc:engineering',
      'Impersonate-User': '',
      'X-Custom': '',
    });
  });

  it('impersonate mode: the service-account token, Impersonate-User and one Impersonate-Group line per group', () => {
    let sa = 'sa-token-1';
    const plan = createUpstreamHeaderPlan({
      config: { upstreamHeaders: DEFAULT_HEADERS, upstreamAuth: 'impersonate', upstreamGroupsMaxBytes: 8000 },
      serviceAccountToken: () => sa,
    });
    const headers = plan({ identity: alice, token: 'the.id.token' });
    expect(headers).toMatchObject({
      Authorization: 'Bearer sa-token-1',
      'Impersonate-User': 'alice@example.com',
      'Impersonate-Group': ['oidc:admins', 'oidc:engineering', 'system:authenticated'],
      'X-Auth-Request-User': 'alice@example.com',
    });
    sa = 'sa-token-2';
    expect(plan({ identity: alice, token: 'x' })['Authorization']).toBe('Bearer sa-token-2');
  });

  it('bounds the groups header at whole groups, and not at all with 0', () => {
    const groups = Array.from({ length: 300 }, (_, i) => `team-${String(i).padStart(3, '0')}`); // 8 bytes each
    const bounded = boundedGroups(groups, 100);
    expect(Buffer.byteLength(bounded)).toBeLessThanOrEqual(100);
    expect(bounded.split(',')).toEqual(groups.slice(0, 11));
    expect(boundedGroups(groups, 0).split(',')).toHaveLength(300);
    expect(boundedGroups(['a', 'b'], 3)).toBe('a,b');
  });

  it('re-reads a rotated service-account token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sa-'));
    try {
      const path = join(dir, 'token');
      writeFileSync(path, 'first\n');
      const token = new ServiceAccountToken(path, 'first\n', createLogger({ level: 'silent' }), 60_000);
      expect(token.current).toBe('first');
      writeFileSync(path, 'second\n');
      await token.refresh();
      expect(token.current).toBe('second');
      rmSync(path);
      await token.refresh();
      expect(token.current).toBe('second');
      token.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('settings', () => {
  const base = {
    OIDC_ISSUER_URL: 'https://dex.example.com/',
    OIDC_CLIENT_ID: 'forward-auth',
    OIDC_CLIENT_SECRET: 'secret',
    COOKIE_SECRET: 'unit-test-cookie-secret-4f9a2c7e1b8d3056',
  };

  it('defaults: no bearer audience (pass-through off), RS256, id-token, 8000-byte groups', () => {
    const config = loadConfig(base);
    expect(config.bearerAudiences).toEqual([]);
    expect(config.bearerAlgorithms).toEqual(['RS256']);
    expect(config.upstreamAuth).toBe('id-token');
    expect(config.upstreamGroupsMaxBytes).toBe(8000);
    expect(config.serviceAccountTokenPath).toBe('/var/run/secrets/kubernetes.io/serviceaccount/token');
  });

  it('reports every bad value at once, and never accepts none or HS256', () => {
    try {
      loadConfig({
        ...base,
        BEARER_ALGORITHMS: 'RS256,none,HS256',
        UPSTREAM_AUTH: 'token',
        UPSTREAM_GROUPS_MAX_BYTES: 'lots',
      });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const text = (error as ConfigError).problems.join('\n');
      expect(text).toContain('BEARER_ALGORITHMS entry "none"');
      expect(text).toContain('BEARER_ALGORITHMS entry "HS256"');
      expect(text).toContain('UPSTREAM_AUTH must be id-token or impersonate');
      expect(text).toContain('UPSTREAM_GROUPS_MAX_BYTES');
    }
  });

  it('impersonation needs a readable service-account token', () => {
    expect(() =>
      loadConfig({ ...base, UPSTREAM_AUTH: 'impersonate', SERVICE_ACCOUNT_TOKEN_PATH: '/nonexistent/token' }),
    ).toThrow(/SERVICE_ACCOUNT_TOKEN_PATH \/nonexistent\/token cannot be read/);
    const config = loadConfig(
      {
        ...base,
        UPSTREAM_AUTH: 'impersonate',
        TRUSTED_PROXIES: '10.42.0.0/16',
        BEARER_AUDIENCES: 'kubernetes, api-clients',
      },
      (p) => (p === '/var/run/secrets/kubernetes.io/serviceaccount/token' ? 'tok' : ''),
    );
    expect(config.upstreamAuth).toBe('impersonate');
    expect(config.bearerAudiences).toEqual(['kubernetes', 'api-clients']);
  });

  it("refuses the gateway's own client id as a bearer audience, saying why", () => {
    expect(() => loadConfig({ ...base, BEARER_AUDIENCES: 'kubernetes,forward-auth' })).toThrow(
      /BEARER_AUDIENCES must not contain OIDC_CLIENT_ID: the gateway hands its ID tokens to every upstream/,
    );
  });
});

describe('bearer tokens: which ones are ours', () => {
  const jwt = (payload: object) =>
    `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;

  it.each([
    ['Bearer abc.def.ghi', 'abc.def.ghi'],
    ['bearer abc.def.ghi', 'abc.def.ghi'],
    ['BEARER abc', 'abc'],
    ['Basic dXNlcjpwYXNz', undefined],
    ['Bearer ', undefined],
    ['Bearerabc', undefined],
    [undefined, undefined],
  ])('%s → %s', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });

  it('only a JWT naming our issuer byte for byte is ours', () => {
    expect(claimsOurIssuer(jwt({ iss: 'https://dex.example.com/' }), 'https://dex.example.com/')).toBe(true);
    expect(claimsOurIssuer(jwt({ iss: 'https://dex.example.com' }), 'https://dex.example.com/')).toBe(false);
    expect(claimsOurIssuer(jwt({ iss: 'https://other/' }), 'https://dex.example.com/')).toBe(false);
    expect(claimsOurIssuer('opaque-token', 'https://dex.example.com/')).toBe(false);
  });

  const config = {
    issuerUrl: 'https://dex.example.com/',
    clientId: 'forward-auth',
    bearerAudiences: ['kubernetes'],
    bearerAlgorithms: ['RS256'],
    ...NAMING,
  };
  const ours = `Bearer ${jwt({ iss: 'https://dex.example.com/' })}`;
  const verifying = (claims: Record<string, unknown>) => ({ verifyBearer: async () => claims as never });

  it('a foreign token is ignored (the cookie step decides), without asking the provider', async () => {
    let asked = false;
    const oidc = {
      verifyBearer: async () => {
        asked = true;
        return {} as never;
      },
    };
    expect(await authenticateBearer('Bearer some-dashboard-token', config, oidc)).toEqual({ kind: 'none' });
    expect(asked).toBe(false);
  });

  it.each([
    ['no user name claim', { sub: 's' }, 'no "email" claim'],
    ['email_verified false', { email: 'a@example.com', email_verified: false }, 'email not verified'],
    [
      'email_verified not a boolean',
      { email: 'a@example.com', email_verified: 'true' },
      'email not verified',
    ],
  ])('refuses a verified token with %s, as the API server does', async (_name, claims, detail) => {
    const result = await authenticateBearer(ours, config, verifying(claims));
    expect(result.kind).toBe('invalid');
    if (result.kind === 'invalid') {
      expect(result.error.status).toBe(401);
      expect(result.error.detail).toContain(detail);
      expect(result.error.headers['WWW-Authenticate']).toContain('error="invalid_token"');
    }
  });

  it('a valid token becomes an identity named like the API server names it', async () => {
    const result = await authenticateBearer(
      ours,
      config,
      verifying({ email: 'a@example.com', groups: 'admins', email_verified: true }),
    );
    expect(result).toMatchObject({
      kind: 'valid',
      identity: { user: 'a@example.com', groups: ['oidc:admins'] },
    });
  });

  it('with no BEARER_AUDIENCES, a token of our issuer is refused without asking the provider', async () => {
    let asked = false;
    const oidc = {
      verifyBearer: async () => {
        asked = true;
        return {} as never;
      },
    };
    const result = await authenticateBearer(ours, { ...config, bearerAudiences: [] }, oidc);
    expect(result.kind).toBe('invalid');
    if (result.kind === 'invalid') expect(result.error.detail).toContain('pass-through is off');
    expect(asked).toBe(false);
  });

  it.each([
    ['its client id as aud', { aud: 'forward-auth' }],
    ['its client id among the audiences', { aud: ['kubernetes', 'forward-auth'] }],
    ['its client id as azp', { aud: ['kubernetes'], azp: 'forward-auth' }],
  ])(
    'refuses a token minted for the gateway (%s): one dashboard cannot replay it on another',
    async (_n, aud) => {
      const claims = { email: 'a@example.com', email_verified: true, ...aud };
      const result = await authenticateBearer(ours, config, verifying(claims));
      expect(result.kind).toBe('invalid');
      if (result.kind === 'invalid') expect(result.error.detail).toContain('minted for this gateway');
    },
  );

  it('accepts a kubectl token for the API server (aud kubernetes, azp kubectl)', async () => {
    const claims = {
      email: 'a@example.com',
      email_verified: true,
      aud: ['kubernetes', 'kubectl'],
      azp: 'kubectl',
    };
    expect((await authenticateBearer(ours, config, verifying(claims))).kind).toBe('valid');
  });

  it('a provider outage is a 503, not a refusal', async () => {
    const down = {
      verifyBearer: async () => {
        throw new AppError('provider_unavailable', 'down');
      },
    };
    await expect(authenticateBearer(ours, config, down)).rejects.toMatchObject({ status: 503 });
  });
});
