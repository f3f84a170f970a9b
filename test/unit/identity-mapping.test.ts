import { describe, expect, it } from 'vitest';
import { parseAuthenticationConfiguration } from '../../src/identity/authenticationConfig.ts';
import { CREDENTIAL_ID_KEY, mapClaims } from '../../src/identity/claimMappings.ts';
import { compileAuthenticationConfiguration } from '../../src/identity/validation.ts';

/**
 * Claims → user as the API server computes it, table by table. The cases are the ones the
 * Kubernetes documentation shows for AuthenticationConfiguration and the ones the API server's
 * own OIDC authenticator is tested with (k8s.io/apiserver plugin/pkg/authenticator/token/oidc,
 * oidc_test.go), re-stated as facts: same configuration and claims, same user or same refusal.
 */

const ISSUER = 'https://auth.example.com';

function authenticatorFrom(jwt: string) {
  const text = `apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
  - issuer:
      url: ${ISSUER}
      audiences: [my-client]
${jwt.replace(/^/gm, '    ')}`;
  const parsed = parseAuthenticationConfiguration(text);
  if (!parsed.file) throw new Error(parsed.problems.join('\n'));
  const { authenticators, problems } = compileAuthenticationConfiguration(parsed.file);
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return authenticators[0]!;
}

const base = { iss: ISSUER, aud: 'my-client', exp: 2_000_000_000 };

interface Case {
  name: string;
  config: string;
  claims: Record<string, unknown>;
  user?: { username: string; groups?: string[]; uid?: string; extra?: Record<string, string[]> };
  /** A fragment of the refusal message. */
  refused?: string;
  /** The field that refused. */
  field?: string;
}

const USERNAME_CLAIM = `claimMappings:
  username: { claim: username, prefix: "" }`;

const cases: Case[] = [
  // --- user names: claims and prefixes -------------------------------------------------------
  {
    name: 'the username claim maps to the user name',
    config: USERNAME_CLAIM,
    claims: { username: 'jane' },
    user: { username: 'jane' },
  },
  {
    name: 'a missing username claim refuses the token',
    config: USERNAME_CLAIM,
    claims: {},
    refused: 'username claim "username" is not present',
    field: 'jwt[0].claimMappings.username.claim',
  },
  {
    name: 'a username prefix is prepended',
    config: `claimMappings:\n  username: { claim: username, prefix: "oidc:" }`,
    claims: { username: 'jane' },
    user: { username: 'oidc:jane' },
  },
  {
    name: 'the legacy issuer# default is written out as a prefix (flags: --oidc-username-claim=sub without a prefix)',
    config: `claimMappings:\n  username: { claim: sub, prefix: "${ISSUER}#" }`,
    claims: { sub: '12345' },
    user: { username: `${ISSUER}#12345` },
  },
  {
    name: 'an empty username is allowed via a claim (as the API server allows it)',
    config: USERNAME_CLAIM,
    claims: { username: '' },
    user: { username: '' },
  },
  {
    name: 'a username claim that is not a string refuses the token',
    config: USERNAME_CLAIM,
    claims: { username: 42 },
    refused: 'is not a string',
  },
  // --- email_verified ------------------------------------------------------------------------
  {
    name: 'email as the username claim with email_verified true maps',
    config: `claimMappings:\n  username: { claim: email, prefix: "" }`,
    claims: { email: 'jane@example.com', email_verified: true },
    user: { username: 'jane@example.com' },
  },
  {
    name: 'email as the username claim with email_verified false refuses the token',
    config: `claimMappings:\n  username: { claim: email, prefix: "" }`,
    claims: { email: 'jane@example.com', email_verified: false },
    refused: 'email not verified',
  },
  {
    name: 'email as the username claim without email_verified maps (the claim is optional)',
    config: `claimMappings:\n  username: { claim: email, prefix: "" }`,
    claims: { email: 'jane@example.com' },
    user: { username: 'jane@example.com' },
  },
  {
    name: 'email_verified that is not a boolean refuses the token',
    config: `claimMappings:\n  username: { claim: email, prefix: "" }`,
    claims: { email: 'jane@example.com', email_verified: 'true' },
    refused: 'not a boolean',
  },
  {
    name: 'email_verified false does not matter when the user name is not the email',
    config: USERNAME_CLAIM,
    claims: { username: 'jane', email: 'jane@example.com', email_verified: false },
    user: { username: 'jane' },
  },
  {
    name: 'a username expression on claims.email with the documented email_verified rule refuses unverified emails',
    config: `claimValidationRules:
  - expression: "claims.?email_verified.orValue(true) == true"
    message: email must be verified
claimMappings:
  username: { expression: "claims.email" }`,
    claims: { email: 'jane@example.com', email_verified: false },
    refused: 'email must be verified',
    field: 'jwt[0].claimValidationRules[0]',
  },
  {
    name: 'the documented email_verified rule lets an absent email_verified through',
    config: `claimValidationRules:
  - expression: "claims.?email_verified.orValue(true) == true"
claimMappings:
  username: { expression: "claims.email" }`,
    claims: { email: 'jane@example.com' },
    user: { username: 'jane@example.com' },
  },
  // --- groups --------------------------------------------------------------------------------
  {
    name: 'groups as a list map with the prefix',
    config: `claimMappings:\n  username: { claim: username, prefix: "" }\n  groups: { claim: groups, prefix: "oidc:" }`,
    claims: { username: 'jane', groups: ['team1', 'team2'] },
    user: { username: 'jane', groups: ['oidc:team1', 'oidc:team2'] },
  },
  {
    name: 'groups as a single string map to one group',
    config: `claimMappings:\n  username: { claim: username, prefix: "" }\n  groups: { claim: groups, prefix: "" }`,
    claims: { username: 'jane', groups: 'team1' },
    user: { username: 'jane', groups: ['team1'] },
  },
  {
    name: 'a null in a groups list reads as the empty group, as Go decodes it',
    config: `claimMappings:\n  username: { claim: username, prefix: "" }\n  groups: { claim: groups, prefix: "p:" }`,
    claims: { username: 'jane', groups: ['a', null] },
    user: { username: 'jane', groups: ['p:a', 'p:'] },
  },
  {
    name: 'a missing groups claim means no groups',
    config: `claimMappings:\n  username: { claim: username, prefix: "" }\n  groups: { claim: groups, prefix: "" }`,
    claims: { username: 'jane' },
    user: { username: 'jane', groups: [] },
  },
  {
    name: 'a groups claim that is neither a string nor a list of strings refuses the token',
    config: `claimMappings:\n  username: { claim: username, prefix: "" }\n  groups: { claim: groups, prefix: "" }`,
    claims: { username: 'jane', groups: 42 },
    refused: 'not a string or a list of strings',
  },
  {
    name: 'a groups expression returning null means no groups',
    config: `claimMappings:\n  username: { expression: claims.username }\n  groups: { expression: claims.groups }`,
    claims: { username: 'jane', groups: null },
    user: { username: 'jane', groups: [] },
  },
  {
    name: 'a groups expression splitting a string claim (the documentation example)',
    config: `claimMappings:\n  username: { expression: 'claims.username + ":external-user"' }\n  groups: { expression: 'claims.roles.split(",")' }`,
    claims: { username: 'jane', roles: 'admin,,dev' },
    user: { username: 'jane:external-user', groups: ['admin', 'dev'] },
  },
  {
    name: 'a groups expression that returns a number refuses the token',
    config: `claimMappings:\n  username: { expression: claims.username }\n  groups: { expression: claims.n }`,
    claims: { username: 'jane', n: 1 },
    refused: 'must return a string or a list of strings',
  },
  {
    name: 'matches, find and findAll use RE2 syntax, as cel-go does ((?i) is valid there)',
    config: `claimValidationRules:
  - { expression: 'claims.mail.matches(r"(?i)@EXAMPLE\\.com$")', message: example.com only }
claimMappings:
  username: { expression: "claims.mail.find('^[^@]+')" }
  groups: { expression: "claims.teams.findAll('[a-z]+', 2)" }`,
    claims: { mail: 'jane@Example.com', teams: 'ops,dev,qa' },
    user: { username: 'jane', groups: ['ops', 'dev'] },
  },
  // --- uid -------------------------------------------------------------------------------------
  {
    name: 'uid from a claim',
    config: `claimMappings:\n  username: { claim: username, prefix: "" }\n  uid: { claim: uid }`,
    claims: { username: 'jane', uid: '1234' },
    user: { username: 'jane', uid: '1234' },
  },
  {
    name: 'a missing uid claim refuses the token',
    config: `claimMappings:\n  username: { claim: username, prefix: "" }\n  uid: { claim: uid }`,
    claims: { username: 'jane' },
    refused: 'uid claim "uid" is not present',
  },
  {
    name: 'uid from an expression',
    config: `claimMappings:\n  username: { expression: claims.username }\n  uid: { expression: 'claims.uid + "-x"' }`,
    claims: { username: 'jane', uid: '1234' },
    user: { username: 'jane', uid: '1234-x' },
  },
  // --- CEL usernames ---------------------------------------------------------------------------
  {
    name: 'a username expression returning the empty string refuses the token',
    config: `claimMappings:\n  username: { expression: claims.username }`,
    claims: { username: '' },
    refused: 'empty username via CEL expression is not allowed',
  },
  {
    name: 'a username expression returning a number refuses the token',
    config: `claimMappings:\n  username: { expression: claims.n }`,
    claims: { n: 3 },
    refused: 'must return a string',
  },
  {
    name: 'a username expression on a missing claim refuses the token with the evaluation error',
    config: `claimMappings:\n  username: { expression: claims.nobody }`,
    claims: {},
    refused: 'resulted in error',
    field: 'jwt[0].claimMappings.username.expression',
  },
  // --- nested claims and extra -----------------------------------------------------------------
  {
    name: 'deeply nested claims map username, uid, groups and extra',
    config: `claimMappings:
  username: { expression: "claims.turtle.foo.bar.baz.panda[0]" }
  uid: { expression: "claims.turtle.foo.bar.baz.panda[1]" }
  groups: { expression: "claims.turtle.foo.bar.baz.panda" }
  extra:
    - { key: bio.snorlax.org/1, valueExpression: "string(claims.turtle.foo.bar.other1.bit2)" }
    - { key: bio.snorlax.org/3, valueExpression: "[string(claims.turtle.foo.bar.baz.other1.bit1)] + ['a', 'b', 'c']" }
userValidationRules:
  - expression: 'user.username != "bad"'
  - expression: 'user.uid == "007"'
  - expression: '"claus" in user.groups'`,
    claims: {
      turtle: {
        foo: {
          bar: {
            baz: { panda: ['snorlax', '007', 'claus'], other1: { bit1: true } },
            other1: { bit2: false },
          },
        },
      },
    },
    user: {
      username: 'snorlax',
      uid: '007',
      groups: ['snorlax', '007', 'claus'],
      extra: { 'bio.snorlax.org/1': ['false'], 'bio.snorlax.org/3': ['true', 'a', 'b', 'c'] },
    },
  },
  {
    name: 'a nested claim that does not exist fails without the optional syntax',
    config: `claimMappings:\n  username: { expression: claims.u }\n  groups: { expression: "claims.turtle.a.b.c.d" }`,
    claims: { u: 'x', turtle: {} },
    refused: 'resulted in error',
    field: 'jwt[0].claimMappings.groups.expression',
  },
  {
    name: 'a nested claim that does not exist is defaulted with the optional syntax',
    config: `claimMappings:\n  username: { expression: claims.u }\n  groups: { expression: "claims.?turtle.?a.?b.orValue([])" }`,
    claims: { u: 'x', turtle: {} },
    user: { username: 'x', groups: [] },
  },
  {
    name: 'claim names with dots are read with __dot__ at any depth',
    config: `claimMappings:
  username: { expression: "claims.turtle.username__dot__io" }
  groups: { expression: "claims.data[0].groups__dot__io" }
claimValidationRules:
  - expression: "has(claims.turtle.username__dot__io)"`,
    claims: { turtle: { 'username.io': 'panda' }, data: [{ 'groups.io': ['g'] }] },
    user: { username: 'panda', groups: ['g'] },
  },
  {
    name: 'extra values derived from claims, hard-coded, defaulted and empty (the documentation examples)',
    config: `claimMappings:
  username: { expression: claims.username }
  extra:
    - { key: example.org/admin, valueExpression: '(has(claims.is_admin) && claims.is_admin) ? "true":""' }
    - { key: example.org/admin_1, valueExpression: 'claims.?is_admin.orValue(false) == true ? "true":""' }
    - { key: example.org/non_existent, valueExpression: 'claims.?non_existent.orValue("default") == "default" ? "true":""' }
    - { key: example.org/hard, valueExpression: '"bar"' }
    - { key: example.org/empty, valueExpression: 'claims.foo' }
    - { key: example.org/list, valueExpression: 'claims.bar' }`,
    claims: { username: 'jane', is_admin: true, foo: '', bar: ['', 'x'] },
    user: {
      username: 'jane',
      extra: {
        'example.org/admin': ['true'],
        'example.org/admin_1': ['true'],
        'example.org/non_existent': ['true'],
        'example.org/hard': ['bar'],
        'example.org/list': ['x'],
      },
    },
  },
  {
    name: 'a string jti sets the credential id in extra',
    config: USERNAME_CLAIM,
    claims: { username: 'jane', jti: '1234' },
    user: { username: 'jane', extra: { [CREDENTIAL_ID_KEY]: ['JTI=1234'] } },
  },
  {
    name: 'a jti that is not a string sets no credential id and is no error',
    config: USERNAME_CLAIM,
    claims: { username: 'jane', jti: 1234 },
    user: { username: 'jane', extra: {} },
  },
  // --- claim validation rules --------------------------------------------------------------------
  {
    name: 'a required claim with the required value passes',
    config: `claimValidationRules:\n  - { claim: hd, requiredValue: example.com }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane', hd: 'example.com' },
    user: { username: 'jane' },
  },
  {
    name: 'a missing required claim refuses the token',
    config: `claimValidationRules:\n  - { claim: hd, requiredValue: example.com }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane' },
    refused: 'required claim hd not present',
  },
  {
    name: 'a required claim with another value refuses the token',
    config: `claimValidationRules:\n  - { claim: hd, requiredValue: example.com }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane', hd: 'other.com' },
    refused: 'required claim hd value does not match',
  },
  {
    name: 'a claim validation expression that is false refuses with its message',
    config: `claimValidationRules:\n  - { expression: 'claims.hd == "example.com"', message: hd claim must be example.com }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane', hd: 'other.com' },
    refused: 'hd claim must be example.com',
    field: 'jwt[0].claimValidationRules[0]',
  },
  {
    name: 'a claim validation expression on a missing claim refuses with the evaluation error',
    config: `claimValidationRules:\n  - { expression: 'claims.hd == "example.com"', message: hd claim must be example.com }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane' },
    refused: 'expression \'claims.hd == "example.com"\' resulted in error',
  },
  {
    name: 'token lifetime bounded by a rule on exp and nbf (the documentation example)',
    config: `claimValidationRules:\n  - { expression: "claims.exp - claims.nbf <= 86400", message: total token lifetime must not exceed 24 hours }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane', nbf: 2_000_000_000 - 90_000 },
    refused: 'total token lifetime must not exceed 24 hours',
  },
  {
    name: 'nuanced audience validation with sets.equivalent passes an exact set',
    config: `claimValidationRules:\n  - { expression: 'sets.equivalent(claims.aud, ["bar", "foo", "baz"])', message: "audience must be exactly bar, foo, baz" }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane', aud: ['foo', 'bar', 'baz'] },
    user: { username: 'jane' },
  },
  {
    name: 'nuanced audience validation with sets.equivalent refuses a superset',
    config: `claimValidationRules:\n  - { expression: 'sets.equivalent(claims.aud, ["bar", "foo", "baz"])', message: "audience must be exactly bar, foo, baz" }\n${USERNAME_CLAIM}`,
    claims: { username: 'jane', aud: ['foo', 'bar', 'baz', 'qux'] },
    refused: 'audience must be exactly bar, foo, baz',
  },
  // --- user validation rules -------------------------------------------------------------------
  {
    name: 'a user validation rule refuses a reserved system: user name',
    config: `claimMappings:\n  username: { claim: username, prefix: "system:" }\nuserValidationRules:\n  - { expression: "!user.username.startsWith('system:')", message: "username cannot used reserved system: prefix" }`,
    claims: { username: 'jane' },
    refused: 'username cannot used reserved system: prefix',
    field: 'jwt[0].userValidationRules[0]',
  },
  {
    name: 'a user validation rule refuses reserved system: groups',
    config: `claimMappings:\n  username: { expression: claims.username }\n  groups: { claim: groups, prefix: "system:" }\nuserValidationRules:\n  - { expression: "user.groups.all(group, !group.startsWith('system:'))", message: "groups cannot used reserved system: prefix" }`,
    claims: { username: 'jane', groups: ['team1', 'team2'] },
    refused: 'groups cannot used reserved system: prefix',
  },
  {
    name: 'user validation rules see empty uid, groups and extra when only the user name is set',
    config: `claimMappings:\n  username: { expression: claims.username }\n  groups: { expression: claims.groups }\nuserValidationRules:
  - { expression: 'user.username == " "', message: username must be single space }
  - { expression: 'user.uid == ""', message: uid must be empty string }
  - { expression: "!('bar' in user.groups)", message: groups must not contain bar }
  - { expression: "!('bar' in user.extra)", message: extra must not contain bar }`,
    claims: { username: ' ', groups: null },
    user: { username: ' ', groups: [] },
  },
  {
    name: 'the claim validation rules run after the mappings: a mapping error is reported first',
    config: `claimValidationRules:\n  - { expression: "false", message: never }\nclaimMappings:\n  username: { claim: username, prefix: "" }`,
    claims: {},
    refused: 'is not present',
  },
];

describe('claims map to the user the API server computes', () => {
  for (const c of cases) {
    it(c.name, () => {
      const result = mapClaims(authenticatorFrom(c.config), { ...base, ...c.claims });
      if (c.user) {
        expect(result.ok ? undefined : result.refusal).toBeUndefined();
        if (!result.ok) return;
        expect(result.user.username).toBe(c.user.username);
        expect(result.user.groups).toEqual(c.user.groups ?? []);
        expect(result.user.uid).toBe(c.user.uid ?? '');
        if (c.user.extra !== undefined) expect(result.user.extra).toEqual(c.user.extra);
      } else {
        expect(result.ok).toBe(false);
        if (result.ok) return;
        expect(result.refusal.message).toContain(c.refused);
        if (c.field) expect(result.refusal.field).toBe(c.field);
      }
    });
  }

  it('an expression that would visit more than the cost limit is stopped, not run to the end', () => {
    const a = authenticatorFrom(
      `claimMappings:\n  username: { expression: claims.u }\nclaimValidationRules:\n  - expression: "claims.big.all(x, claims.big.all(y, claims.big.all(z, true)))"`,
    );
    const big = Array.from({ length: 200 }, (_, i) => i);
    const result = mapClaims(a, { ...base, u: 'x', big });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.refusal.message).toContain('cost limit exceeded');
  });
});
