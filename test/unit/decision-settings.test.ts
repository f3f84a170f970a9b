import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { makeTempDir, removeDir } from '../support/redis.ts';
import { hasOpenssl, makeTestPki, type TestPki } from '../support/tls.ts';
import { parseRule } from '../support/traefik.ts';

/** AUTH_PORT, AUTH_TLS_* and what UPSTREAM_AUTH=impersonate demands of TRUSTED_PROXIES. */

const base = {
  OIDC_ISSUER_URL: 'https://dex.example.com/dex',
  OIDC_CLIENT_ID: 'fwd',
  OIDC_CLIENT_SECRET: 'client-secret-value',
  COOKIE_SECRET: 'k3Q9xP2mV7bN4wL8zR1tY6uJ0hG5fD3s-decision',
};

function problems(env: Record<string, string>, files: Record<string, string> = {}): string[] {
  try {
    loadConfig({ ...base, ...env }, (p) => {
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

describe('the decision listener settings', () => {
  it('are off by default: PORT serves the decisions', () => {
    expect(loadConfig(base).decisionListener).toBeUndefined();
  });

  it('AUTH_PORT gives the decisions a port of their own', () => {
    expect(loadConfig({ ...base, AUTH_PORT: '4181' }).decisionListener).toEqual({ port: 4181 });
  });

  it.each([
    [{ AUTH_PORT: 'http' }, /AUTH_PORT must be a port number/],
    [{ AUTH_PORT: '70000' }, /AUTH_PORT must be a port number/],
    [{ AUTH_PORT: '4180' }, /AUTH_PORT must differ from PORT/],
    [{ AUTH_TLS_CERT_FILE: '/tls/crt', AUTH_TLS_KEY_FILE: '/tls/key' }, /need AUTH_PORT/],
    [{ AUTH_PORT: '4181', AUTH_TLS_CERT_FILE: '/tls/crt' }, /go together/],
    [{ AUTH_PORT: '4181', AUTH_TLS_CLIENT_CA_FILE: '/tls/ca' }, /go together/],
    [
      { AUTH_PORT: '4181', AUTH_TLS_CERT_FILE: '/nope/crt', AUTH_TLS_KEY_FILE: '/nope/key' },
      /AUTH_TLS_CERT_FILE \/nope\/crt cannot be read \(ENOENT\)/,
    ],
  ])('refuses %j with one clear problem', (env, message) => {
    expect(problems(env as Record<string, string>).join('\n')).toMatch(message);
  });
});

describe.skipIf(!hasOpenssl())('the decision listener TLS files', () => {
  let pki: TestPki;
  let files: Record<string, string>;
  beforeAll(async () => {
    pki = makeTestPki(await makeTempDir('tls-settings'));
    files = Object.fromEntries(
      [pki.serverCert, pki.serverKey, pki.caCert, pki.clientKey].map((f) => [f, readFileSync(f, 'utf8')]),
    );
  });
  afterAll(async () => {
    if (pki) await removeDir(pki.dir);
  });

  it('are checked at start by building a TLS context from them', () => {
    const env = {
      AUTH_PORT: '4181',
      AUTH_TLS_CERT_FILE: pki.serverCert,
      AUTH_TLS_KEY_FILE: pki.serverKey,
      AUTH_TLS_CLIENT_CA_FILE: pki.caCert,
    };
    expect(problems(env, files)).toEqual([]);
    // A key that is not the certificate's stops start-up.
    expect(problems({ ...env, AUTH_TLS_KEY_FILE: pki.clientKey }, files).join('\n')).toMatch(
      /AUTH_TLS_\*: the certificate, key or CA is not usable/,
    );
    expect(problems({ ...env, AUTH_TLS_CLIENT_CA_FILE: pki.serverKey }, files).join('\n')).toMatch(
      /AUTH_TLS_CLIENT_CA_FILE holds no PEM certificate/,
    );
  });
});

describe('UPSTREAM_AUTH=impersonate', () => {
  const token = (p: string) => (p.endsWith('/token') ? 'sa-token' : '');

  it('refuses to start unless TRUSTED_PROXIES is set explicitly', () => {
    expect(() => loadConfig({ ...base, UPSTREAM_AUTH: 'impersonate' }, token)).toThrow(
      /UPSTREAM_AUTH=impersonate needs TRUSTED_PROXIES set explicitly/,
    );
    expect(
      loadConfig({ ...base, UPSTREAM_AUTH: 'impersonate', TRUSTED_PROXIES: '10.42.0.0/16' }, token)
        .upstreamAuth,
    ).toBe('impersonate');
  });

  it('does not need it in id-token mode', () => {
    expect(loadConfig(base).upstreamAuth).toBe('id-token');
  });
});

describe('the Traefik emulator’s rules', () => {
  const rule = parseRule(
    'Host(`a.example.com`) && (Path(`/oauth2/start`) || PathPrefix(`/kubeconfig/`)) && !Path(`/kubeconfig/secret`)',
  );
  it.each([
    ['a.example.com', '/oauth2/start', true],
    ['a.example.com', '/oauth2/auth', false],
    ['b.example.com', '/oauth2/start', false],
    ['a.example.com', '/kubeconfig/download', true],
    ['a.example.com', '/kubeconfig/secret', false],
  ])('match %s%s as Traefik would: %s', (host, path, expected) => {
    expect(rule(host, path)).toBe(expected);
  });

  it('refuse what they do not model, rather than guess', () => {
    expect(() => parseRule('HostRegexp(`.*`)')).toThrow(/matcher HostRegexp/);
    expect(() => parseRule('Path(`/a`) &&')).toThrow();
  });
});
