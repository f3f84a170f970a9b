import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';

/** ADMIN_PORT, ADMIN_TOKEN_FILE and ADMIN_TLS_*: no admin API unless asked, never one without a credential. */

const base = {
  OIDC_ISSUER_URL: 'https://dex.example.com/dex',
  OIDC_CLIENT_ID: 'fwd',
  OIDC_CLIENT_SECRET: 'client-secret-value',
  COOKIE_SECRET: 'k3Q9xP2mV7bN4wL8zR1tY6uJ0hG5fD3s-admin',
};
const TOKEN = 'a-long-enough-admin-token-0123456789abcdef';
const files: Record<string, string> = { '/secret/token': `${TOKEN}\n`, '/secret/short': 'short\n' };
const read = (p: string): string => {
  const f = files[p];
  if (f === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' });
  return f;
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...base, ...env }, read);
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
}

describe('the admin API settings', () => {
  it('are off by default: there is no admin API', () => {
    expect(loadConfig(base, read).adminListener).toBeUndefined();
  });

  it('ADMIN_PORT with a token file opens it, the token read from the file (not kept in the config)', () => {
    const config = loadConfig({ ...base, ADMIN_PORT: '4182', ADMIN_TOKEN_FILE: '/secret/token' }, read);
    expect(config.adminListener).toEqual({ port: 4182, host: '127.0.0.1', tokenFile: '/secret/token' });
    expect(JSON.stringify(config)).not.toContain(TOKEN);
  });

  it('listens on loopback unless ADMIN_HOST widens it, and refuses an ADMIN_HOST that is no IP address', () => {
    const wide = loadConfig(
      { ...base, ADMIN_PORT: '4182', ADMIN_TOKEN_FILE: '/secret/token', ADMIN_HOST: '0.0.0.0' },
      read,
    );
    expect(wide.adminListener?.host).toBe('0.0.0.0');
    expect(() =>
      loadConfig(
        { ...base, ADMIN_PORT: '4182', ADMIN_TOKEN_FILE: '/secret/token', ADMIN_HOST: 'everywhere' },
        read,
      ),
    ).toThrow(/ADMIN_HOST.*IP address/);
  });

  it.each([
    [{ ADMIN_PORT: '4182' }, /ADMIN_PORT needs ADMIN_TOKEN_FILE .* or mutual TLS/],
    [
      { ADMIN_PORT: '4180', ADMIN_TOKEN_FILE: '/secret/token' },
      /ADMIN_PORT must differ from PORT and AUTH_PORT/,
    ],
    [
      { ADMIN_PORT: '4181', AUTH_PORT: '4181', ADMIN_TOKEN_FILE: '/secret/token' },
      /ADMIN_PORT must differ from PORT and AUTH_PORT/,
    ],
    [{ ADMIN_TOKEN_FILE: '/secret/token' }, /need ADMIN_PORT/],
    [{ ADMIN_PORT: '4182', ADMIN_TOKEN_FILE: '/nope' }, /ADMIN_TOKEN_FILE \/nope cannot be read \(ENOENT\)/],
    [{ ADMIN_PORT: '4182', ADMIN_TOKEN_FILE: '/secret/short' }, /at least 32 characters/],
    [
      { ADMIN_PORT: '4182', ADMIN_TLS_CLIENT_CA_FILE: '/tls/ca' },
      /ADMIN_TLS_CERT_FILE and ADMIN_TLS_KEY_FILE go together/,
    ],
    [
      {
        ADMIN_PORT: '4182',
        ADMIN_TLS_CERT_FILE: '/nope/crt',
        ADMIN_TLS_KEY_FILE: '/nope/key',
        ADMIN_TLS_CLIENT_CA_FILE: '/nope/ca',
      },
      /ADMIN_TLS_CERT_FILE \/nope\/crt cannot be read \(ENOENT\)/,
    ],
  ])('refuses %j with one clear problem', (env, message) => {
    expect(problems(env as Record<string, string>).join('\n')).toMatch(message);
  });
});
