import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { loadAuthenticationFile } from '../../src/identity/authenticationFile.ts';

/**
 * What the API server refuses in an AuthenticationConfiguration (its validation package), refused
 * the same way at start-up: every problem at once, each naming the field.
 */

const ISSUER = 'https://auth.example.com';

function problemsOf(jwt: string, extra = ''): string[] {
  const text = `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
${extra}jwt:
${jwt}`;
  const result = loadAuthenticationFile({
    path: '/etc/authn.yaml',
    loginIssuer: ISSUER,
    allowInsecureHttp: false,
    readFile: () => text,
  });
  return result.problems;
}

const entry = (issuer: string, mappings: string, more = '') => `  - issuer:
${issuer.replace(/^/gm, '      ')}
    claimMappings:
${mappings.replace(/^/gm, '      ')}
${more.replace(/^/gm, '    ')}`;

const OK_ISSUER = `url: ${ISSUER}\naudiences: [my-client]`;
const OK_USER = 'username: { claim: sub, prefix: "" }';

const cases: { name: string; jwt: string; extra?: string; problem: string }[] = [
  {
    name: 'a CEL syntax error names the rule',
    jwt: entry(OK_ISSUER, 'username: { expression: "claims.sub +" }'),
    problem: 'jwt[0].claimMappings.username.expression: Invalid value: "claims.sub +": compilation failed',
  },
  {
    name: 'a claim validation rule that is not a boolean is refused',
    jwt: entry(OK_ISSUER, OK_USER, 'claimValidationRules:\n  - expression: claims.email_verified'),
    problem:
      'jwt[0].claimValidationRules[0].expression: Invalid value: "claims.email_verified": must evaluate to bool',
  },
  {
    name: 'a user validation rule on an unknown field of user is refused',
    jwt: entry(OK_ISSUER, OK_USER, 'userValidationRules:\n  - expression: "user.nickname == \'x\'"'),
    problem: 'jwt[0].userValidationRules[0].expression',
  },
  {
    name: 'claims.email in the username expression without email_verified anywhere is refused',
    jwt: entry(OK_ISSUER, 'username: { expression: claims.email }'),
    problem: 'claims.email_verified must be used in claimMappings.username.expression',
  },
  {
    name: 'a claim without a prefix is refused',
    jwt: entry(OK_ISSUER, 'username: { claim: sub }'),
    problem: 'jwt[0].claimMappings.username.prefix: Required value',
  },
  {
    name: 'a prefix beside an expression is refused',
    jwt: entry(OK_ISSUER, 'username: { expression: claims.sub, prefix: "x" }'),
    problem: 'jwt[0].claimMappings.username.prefix: may not be specified when expression is set',
  },
  {
    name: 'claim and expression together are refused',
    jwt: entry(OK_ISSUER, 'username: { claim: sub, prefix: "", expression: claims.sub }'),
    problem: 'jwt[0].claimMappings.username: Invalid value: "": claim and expression can\'t both be set',
  },
  {
    name: 'two audiences without MatchAny are refused',
    jwt: entry(`url: ${ISSUER}\naudiences: [a, b]`, OK_USER),
    problem: 'jwt[0].issuer.audienceMatchPolicy: audienceMatchPolicy must be MatchAny for multiple audiences',
  },
  {
    name: 'an http:// issuer is refused',
    jwt: entry('url: http://auth.example.com\naudiences: [a]', OK_USER),
    problem: 'jwt[0].issuer.url: Invalid value: "http://auth.example.com": URL scheme must be https',
  },
  {
    name: 'a discovery URL equal to the issuer URL is refused',
    jwt: entry(`url: ${ISSUER}\ndiscoveryURL: ${ISSUER}/\naudiences: [a]`, OK_USER),
    problem: 'jwt[0].issuer.discoveryURL: discoveryURL must be different from URL',
  },
  {
    name: 'an extra key in the kubernetes.io domain is refused',
    jwt: entry(OK_ISSUER, `${OK_USER}\nextra:\n  - { key: kubernetes.io/foo, valueExpression: "'x'" }`),
    problem: 'reserved for Kubernetes use',
  },
  {
    name: 'an extra key that is not lowercase is refused',
    jwt: entry(OK_ISSUER, `${OK_USER}\nextra:\n  - { key: example.org/Foo, valueExpression: "'x'" }`),
    problem: 'must be lowercase',
  },
  {
    name: 'the same extra key twice is refused',
    jwt: entry(
      OK_ISSUER,
      `${OK_USER}\nextra:\n  - { key: example.org/foo, valueExpression: "'x'" }\n  - { key: example.org/foo, valueExpression: "'y'" }`,
    ),
    problem: 'jwt[0].claimMappings.extra[1].key: Duplicate value',
  },
  {
    name: 'a claim rule with a message is refused',
    jwt: entry(OK_ISSUER, OK_USER, 'claimValidationRules:\n  - { claim: hd, message: nope }'),
    problem: 'jwt[0].claimValidationRules[0].message: may not be specified when claim is set',
  },
  {
    name: 'an unknown field (a typo) is refused',
    jwt: entry(OK_ISSUER, 'username: { claim: sub, prefix: "" }\ngroup: { claim: groups, prefix: "" }'),
    problem: 'unknown field "group"',
  },
  {
    name: 'the same issuer twice is refused',
    jwt: `${entry(OK_ISSUER, OK_USER)}\n${entry(OK_ISSUER, OK_USER)}`,
    problem: 'jwt[1].issuer.url: Duplicate value',
  },
  {
    name: 'a Kubernetes CEL function dex-forward-auth does not provide is a clear compile error',
    jwt: entry(OK_ISSUER, 'username: { expression: "url(claims.sub).getHost()" }'),
    problem: 'is a Kubernetes CEL function that dex-forward-auth does not provide',
  },
  {
    name: "a function of the CEL library that the API server's environment lacks is refused",
    jwt: entry(OK_ISSUER, 'username: { expression: "cel.bind(x, claims.sub, x)" }'),
    problem: "undeclared reference to 'bind'",
  },
  {
    name: 'OIDC_ISSUER_URL must be one of the issuers',
    jwt: entry('url: https://other.example.com\naudiences: [a]', OK_USER),
    problem: 'OIDC_ISSUER_URL "https://auth.example.com" must be one of the issuers',
  },
];

describe('an AuthenticationConfiguration the API server would refuse is refused at start-up', () => {
  for (const c of cases) {
    it(c.name, () => {
      const problems = problemsOf(c.jwt, c.extra);
      expect(problems.join('\n')).toContain(c.problem);
      for (const p of problems) expect(p.startsWith('AUTHENTICATION_CONFIG /etc/authn.yaml: ')).toBe(true);
    });
  }

  it('every problem is reported at once', () => {
    const problems = problemsOf(
      entry(
        `url: ${ISSUER}\naudiences: []`,
        'username: { expression: "claims.sub +" }',
        'userValidationRules:\n  - expression: ""',
      ),
    );
    expect(problems.length).toBeGreaterThanOrEqual(3);
  });

  it('a valid file compiles', () => {
    expect(problemsOf(entry(OK_ISSUER, OK_USER))).toEqual([]);
  });

  it('a wrong apiVersion or kind is refused', () => {
    const result = loadAuthenticationFile({
      path: 'f',
      loginIssuer: ISSUER,
      allowInsecureHttp: false,
      readFile: () => 'apiVersion: v1\nkind: ConfigMap\njwt: []\n',
    });
    expect(result.problems.join('\n')).toMatch(
      /apiVersion: must be one of .*kind: must be AuthenticationConfiguration/s,
    );
  });
});

describe('the AUTHENTICATION_CONFIG setting', () => {
  const env = {
    OIDC_ISSUER_URL: ISSUER,
    OIDC_CLIENT_ID: 'c',
    OIDC_CLIENT_SECRET: 's',
    COOKIE_SECRET: 'Zq8v-Lr3W0pXn7Ks2YbT9cHf4JmR6eUa1GdQ5iNo',
  };

  it('is unset by default, so the flag-based settings apply', () => {
    expect(loadConfig(env).authenticationConfig).toBeUndefined();
  });

  it('names the file', () => {
    expect(loadConfig({ ...env, AUTHENTICATION_CONFIG: ' /etc/authn.yaml ' }).authenticationConfig).toBe(
      '/etc/authn.yaml',
    );
  });

  it('cannot be combined with the settings it replaces, as the API server refuses --oidc-* flags beside its file', () => {
    expect(() =>
      loadConfig({
        ...env,
        AUTHENTICATION_CONFIG: '/etc/authn.yaml',
        OIDC_GROUPS_PREFIX: 'oidc:',
        BEARER_AUDIENCES: 'k',
      }),
    ).toThrow(
      /OIDC_GROUPS_PREFIX cannot be combined with AUTHENTICATION_CONFIG[\s\S]*BEARER_AUDIENCES cannot be combined/,
    );
  });

  it("the start-up preflight reports the file's problems together with every other setting's", async () => {
    const { preflight } = await import('../../src/preflight.ts');
    const text = `apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n${entry(OK_ISSUER, 'username: { expression: "1 +" }')}`;
    const result = preflight({ ...env, AUTHENTICATION_CONFIG: '/etc/authn.yaml', PORT: 'x' }, (path) => {
      if (path === '/etc/authn.yaml') return text;
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    });
    expect(result.config).toBeUndefined();
    expect(result.problems.join('\n')).toMatch(/PORT[\s\S]*jwt\[0\]\.claimMappings\.username\.expression/);
  });

  it('a broken file stops start-up with the problems (no stack trace)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'authn-'));
    try {
      const path = join(dir, 'authn.yaml');
      writeFileSync(
        path,
        `apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n${entry(OK_ISSUER, 'username: { expression: "1 +" }')}`,
      );
      const { buildDeps } = await import('../../src/app.ts');
      const { createLogger } = await import('../../src/log.ts');
      const config = loadConfig({ ...env, AUTHENTICATION_CONFIG: path });
      expect(() => buildDeps(config, { log: createLogger({ level: 'silent' }) })).toThrow(
        /jwt\[0\]\.claimMappings\.username\.expression/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
