import { afterEach, describe, expect, it } from 'vitest';
import { defaultAuthorizer } from '../../src/authz/policy.ts';
import {
  type AuthenticationService,
  createAuthenticationService,
} from '../../src/identity/authentication.ts';
import { identityFromClaims } from '../../src/identity/claims.ts';
import { createLogger } from '../../src/log.ts';

/**
 * The session side of AUTHENTICATION_CONFIG: login claims mapped by OIDC_ISSUER_URL's entry after
 * the API server's audience check, identities tagged with the file's revision, and refusals that
 * the authorizer turns into denials. (No network: the issuer is a closed loopback port.)
 */

const ISSUER = 'http://127.0.0.1:9/';
const FILE = `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer: { url: "${ISSUER}", audiences: [kubernetes] }
    claimMappings:
      username: { claim: sub, prefix: "" }
      groups: { claim: groups, prefix: "oidc:" }
`;

let service: AuthenticationService | undefined;
afterEach(() => service?.close());

function start(text: string): AuthenticationService {
  service = createAuthenticationService({
    path: '/etc/authn.yaml',
    loginIssuer: ISSUER,
    allowInsecureHttp: true,
    readFile: () => text,
    log: createLogger({ level: 'silent' }),
    clock: { now: () => Date.now() },
    pollMs: 60_000,
  });
  return service;
}

describe('session identities from an AuthenticationConfiguration', () => {
  it('maps login claims with the entry of OIDC_ISSUER_URL and tags them with the revision', () => {
    const s = start(FILE);
    const identity = s.identify({
      iss: ISSUER,
      aud: ['kubernetes', 'forward-auth'],
      sub: 'u1',
      groups: ['dev'],
    });
    expect(identity).toMatchObject({
      user: 'u1',
      groups: ['oidc:dev'],
      uid: '',
      authnRevision: s.revision(),
    });
    expect(identity.refused).toBeUndefined();
    expect(s.isCurrent(identity)).toBe(true);
    expect(s.isCurrent({ ...identity, authnRevision: 'older' })).toBe(false);
  });

  it('refuses an ID token without one of the audiences, since the API server would refuse the token passed on', () => {
    const identity = start(FILE).identify({ iss: ISSUER, aud: 'forward-auth', sub: 'u1' });
    expect(identity.refused?.field).toBe('jwt[0].issuer.audiences');
    expect(identity.refused?.message).toContain('audience:server:client_id:');
  });

  it('turns a refused identity into a denial carrying the reason', () => {
    const identity = start(FILE).identify({ iss: ISSUER, aud: 'forward-auth', sub: 'u1' });
    const decision = defaultAuthorizer.decide(identity, { method: 'GET', host: 'a', path: '/' });
    expect(decision).toMatchObject({ allowed: false, code: 'forbidden' });
    if (!decision.allowed) expect(decision.reason).toBe(identity.refused?.message);
  });

  it("lets the file's rules decide email_verified: a mapped identity with email_verified false is not refused by the baseline", () => {
    const identity = start(FILE).identify({
      iss: ISSUER,
      aud: 'kubernetes',
      sub: 'u1',
      email_verified: false,
    });
    expect(defaultAuthorizer.decide(identity, { method: 'GET', host: 'a', path: '/' }).allowed).toBe(true);
    // Without AUTHENTICATION_CONFIG the baseline still refuses such a token.
    const flags = identityFromClaims(
      { sub: 'u1', email: 'a@b', email_verified: false },
      { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: '' },
    );
    expect(defaultAuthorizer.decide(flags, { method: 'GET', host: 'a', path: '/' }).allowed).toBe(false);
  });

  it.each([
    ['"false"', 'false'],
    ['0', 0],
    ['null', null],
  ])(
    'reads email_verified %s as not verified, so an email or emailDomains rule does not admit the address',
    (_name, value) => {
      const identity = start(FILE).identify({
        iss: ISSUER,
        aud: 'kubernetes',
        sub: 'u1',
        email: 'a@example.com',
        email_verified: value,
      });
      expect(identity.emailVerified).toBe(false);
      const flags = identityFromClaims(
        { sub: 'u1', email: 'a@example.com', email_verified: value },
        { usernameClaim: 'email', usernamePrefix: '', groupsClaim: 'groups', groupsPrefix: '' },
      );
      expect(defaultAuthorizer.decide(flags, { method: 'GET', host: 'a', path: '/' })).toMatchObject({
        allowed: false,
        code: 'email_not_verified',
      });
    },
  );

  it('stops start-up with the problems when the file is broken', () => {
    expect(() => start(FILE.replace('prefix: "oidc:"', ''))).toThrow(
      /jwt\[0\]\.claimMappings\.groups\.prefix: Required value/,
    );
  });
});
