import { describe, expect, it } from 'vitest';
import { broadTrustedProxies, loadConfig } from '../../../src/config.ts';
import { checkCallbackSetting } from '../../../src/doctor/checks/callbackSetting.ts';
import { checkCookies } from '../../../src/doctor/checks/cookies.ts';
import { checkSecrets } from '../../../src/doctor/checks/secrets.ts';
import { checkTrustedProxies } from '../../../src/doctor/checks/trustedProxies.ts';
import { DOCTOR_COOKIE_SECRET } from '../../support/doctor.ts';

/** The three checks that need no network: the callback setting, cookie domains, secrets. */

const config = (env: Record<string, string>) =>
  loadConfig({
    OIDC_ISSUER_URL: 'https://idp.example.com/',
    OIDC_CLIENT_ID: 'c',
    OIDC_CLIENT_SECRET: 'a-long-enough-client-secret',
    COOKIE_SECRET: DOCTOR_COOKIE_SECRET,
    ...env,
  });

describe('the callback setting check', () => {
  it('refuses an http callback while cookies are Secure, and a path the service does not serve', () => {
    const findings = checkCallbackSetting(config({ REDIRECT_URL: 'http://auth.example.com/login' }));
    expect(findings.map((f) => f.message)).toEqual([
      expect.stringContaining('/oauth2/callback'),
      expect.stringContaining('COOKIE_SECURE=true'),
    ]);
  });
});

describe('the cookie domain check', () => {
  it('reports an allowed redirect domain outside COOKIE_DOMAIN', () => {
    const findings = checkCookies(
      config({ COOKIE_DOMAIN: '.example.com', ALLOWED_REDIRECT_DOMAINS: '.example.com,grafana.other.test' }),
    );
    expect(findings).toEqual([
      expect.objectContaining({ status: 'problem', message: expect.stringContaining('grafana.other.test') }),
    ]);
  });

  it('reports a central callback host without a cookie domain', () => {
    const findings = checkCookies(
      config({
        REDIRECT_URL: 'https://auth.example.com/oauth2/callback',
        ALLOWED_REDIRECT_DOMAINS: 'grafana.example.com',
      }),
    );
    expect(findings[0]?.message).toMatch(/COOKIE_DOMAIN is unset/);
  });
});

describe('the secrets check', () => {
  it('passes strong secrets and warns about a short client secret, never printing either', () => {
    const findings = checkSecrets(config({ OIDC_CLIENT_SECRET: 'short-secret' }));
    expect(findings.map((f) => f.status)).toEqual(['warning', 'ok']);
    expect(JSON.stringify(findings)).not.toContain('short-secret');
  });

  it('says nothing about a client secret when the client signs assertions instead', () => {
    const findings = checkSecrets({ ...config({}), clientSecret: '' });
    expect(findings.map((f) => f.status)).toEqual(['ok']);
  });
});

describe('the trusted proxies check', () => {
  it.each(['10.244.0.0/16', '10.0.0.0/8', 'fd00:10:244::/56'])(
    'warns when TRUSTED_PROXIES holds %s, a range any pod of a pod network shares',
    (range) => {
      const findings = checkTrustedProxies(config({ TRUSTED_PROXIES: `127.0.0.1/32,${range}` }));
      expect(findings).toEqual([
        expect.objectContaining({ status: 'warning', message: expect.stringContaining(range) }),
      ]);
      expect(findings[0]?.message).not.toContain('127.0.0.1/32');
    },
  );

  it("is fine with the proxy's own addresses, and with a broad range behind mutual TLS", () => {
    expect(checkTrustedProxies(config({ TRUSTED_PROXIES: '10.244.3.0/24,10.0.0.7' }))[0]?.status).toBe('ok');
    expect(checkTrustedProxies(config({}))[0]?.status).toBe('ok');
    expect(
      broadTrustedProxies({
        trustedProxies: ['10.244.0.0/16'],
        decisionListener: { port: 4181, tls: { certFile: 'c', keyFile: 'k', clientCaFile: 'ca' } },
      }),
    ).toEqual([]);
  });
});
