import { CelEvaluationError, type CelProgram } from './cel.ts';
import type { ClaimMapping, CompiledJwtAuthenticator, CompiledRule } from './validation.ts';

/**
 * Claims → user, step for step as the API server's JWT authenticator does it (k8s.io/apiserver
 * plugin/pkg/authenticator/token/oidc, AuthenticateToken): username, groups, uid, extra, then the
 * required claims, the claim validation rules and the user validation rules. The first problem
 * refuses the identity; the refusal names the step and, for a rule that evaluated to false, its
 * `message`.
 *
 * JSON semantics follow Go's encoding/json as the API server uses it: a claim that is `null`
 * reads as the empty string (or false, or no groups), a claim of the wrong type is an error.
 */

export interface KubernetesUser {
  readonly username: string;
  readonly uid: string;
  readonly groups: readonly string[];
  readonly extra: Readonly<Record<string, readonly string[]>>;
}

export interface Refusal {
  /** The part of the configuration that refused, e.g. `jwt[0].claimValidationRules[1]`. */
  readonly field: string;
  /** Shown to the user: the rule's message, or what went wrong. */
  readonly message: string;
}

export type MappingResult =
  | { readonly ok: true; readonly user: KubernetesUser }
  | { readonly ok: false; readonly refusal: Refusal };

/** The extra key the API server sets from a string `jti` claim. */
export const CREDENTIAL_ID_KEY = 'authentication.kubernetes.io/credential-id';

class Refused extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

type Claims = Readonly<Record<string, unknown>>;

/** json.Unmarshal into a Go string: null leaves "", anything but a string is an error. */
function stringClaim(claims: Claims, name: string, field: string, what: string): string {
  if (!Object.hasOwn(claims, name)) throw new Refused(field, `${what} claim "${name}" is not present`);
  const value = claims[name];
  if (value === null) return '';
  if (typeof value !== 'string') throw new Refused(field, `${what} claim "${name}" is not a string`);
  return value;
}

function evaluate(program: CelProgram, input: unknown, field: string): unknown {
  try {
    return program.run(input);
  } catch (error) {
    if (error instanceof CelEvaluationError) {
      throw new Refused(field, `expression '${program.expression}' resulted in error: ${error.message}`);
    }
    throw error;
  }
}

/** convertCELValueToStringList: "", [], null → none; empty strings in a list are dropped. */
function stringList(value: unknown, field: string, context: string): string[] {
  if (value === null) return [];
  if (typeof value === 'string') return value === '' ? [] : [value];
  if (Array.isArray(value)) {
    const out: string[] = [];
    for (const item of value) {
      if (typeof item !== 'string')
        throw new Refused(field, `${context}: expression must return a string or a list of strings`);
      if (item !== '') out.push(item);
    }
    return out;
  }
  throw new Refused(field, `${context}: expression must return a string or a list of strings`);
}

function username(a: CompiledJwtAuthenticator, claims: Claims): string {
  const field = `jwt[${a.index}].claimMappings.username`;
  if ('program' in a.username) {
    const value = evaluate(a.username.program, claims, `${field}.expression`);
    if (typeof value !== 'string')
      throw new Refused(`${field}.expression`, 'username claim expression must return a string');
    if (value === '')
      throw new Refused(`${field}.expression`, 'empty username via CEL expression is not allowed');
    return value;
  }
  const { claim, prefix } = a.username;
  const name = stringClaim(claims, claim, `${field}.claim`, 'username');
  if (claim === 'email' && Object.hasOwn(claims, 'email_verified')) {
    const verified = claims['email_verified'];
    if (verified !== null && typeof verified !== 'boolean') {
      throw new Refused(`${field}.claim`, `the "email_verified" claim is not a boolean`);
    }
    if (verified !== true) throw new Refused(`${field}.claim`, 'email not verified');
  }
  return prefix + name;
}

function groups(a: CompiledJwtAuthenticator, claims: Claims): string[] {
  const field = `jwt[${a.index}].claimMappings.groups`;
  const mapping: ClaimMapping | undefined = a.groups;
  if (mapping === undefined) return [];
  if ('program' in mapping) {
    const value = evaluate(mapping.program, claims, `${field}.expression`);
    return stringList(value, `${field}.expression`, 'error evaluating group claim expression');
  }
  if (!Object.hasOwn(claims, mapping.claim)) return [];
  const value = claims[mapping.claim];
  let list: string[];
  if (value === null) list = [];
  else if (typeof value === 'string') list = [value];
  // json.Unmarshal into []string: a null element reads as "".
  else if (Array.isArray(value) && value.every((g) => typeof g === 'string' || g === null)) {
    list = value.map((g) => (g === null ? '' : (g as string)));
  } else
    throw new Refused(
      `${field}.claim`,
      `groups claim "${mapping.claim}" is not a string or a list of strings`,
    );
  return list.map((g) => mapping.prefix + g);
}

function uid(a: CompiledJwtAuthenticator, claims: Claims): string {
  const field = `jwt[${a.index}].claimMappings.uid`;
  if (a.uid === undefined) return '';
  if ('claim' in a.uid) return stringClaim(claims, a.uid.claim, `${field}.claim`, 'uid');
  const value = evaluate(a.uid.program, claims, `${field}.expression`);
  if (typeof value !== 'string')
    throw new Refused(`${field}.expression`, 'uid claim expression must return a string');
  return value;
}

function extra(a: CompiledJwtAuthenticator, claims: Claims): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  const jti = claims['jti'];
  if (typeof jti === 'string' && jti !== '') out[CREDENTIAL_ID_KEY] = [`JTI=${jti}`];
  for (const [i, mapping] of a.extra.entries()) {
    const field = `jwt[${a.index}].claimMappings.extra[${i}].valueExpression`;
    const values = stringList(
      evaluate(mapping.program, claims, field),
      field,
      `error evaluating extra claim expression: ${mapping.program.expression}`,
    );
    if (values.length > 0) out[mapping.key] = values;
  }
  return out;
}

function requiredClaims(a: CompiledJwtAuthenticator, claims: Claims): void {
  for (const [claim, value] of a.requiredClaims) {
    const field = `jwt[${a.index}].claimValidationRules`;
    if (!Object.hasOwn(claims, claim))
      throw new Refused(field, `required claim ${claim} not present in ID token`);
    const actual = stringClaim(claims, claim, field, 'required');
    if (actual !== value) throw new Refused(field, `required claim ${claim} value does not match`);
  }
}

/** All rules are evaluated first (an error in any wins), then the first false one refuses. */
function checkRules(rules: readonly CompiledRule[], input: unknown): void {
  const results = rules.map(
    (rule) => [rule, evaluate(rule.program, input, `${rule.field}.expression`)] as const,
  );
  for (const [rule, result] of results) {
    if (typeof result !== 'boolean')
      throw new Refused(rule.field, 'validation expression must return a boolean');
    if (!result) {
      throw new Refused(rule.field, rule.message || `validation expression '${rule.expression}' failed`);
    }
  }
}

/** Maps verified claims to the user the API server would see, or says why it would refuse them. */
export function mapClaims(a: CompiledJwtAuthenticator, claims: Claims): MappingResult {
  try {
    const user: KubernetesUser = {
      username: username(a, claims),
      groups: groups(a, claims),
      uid: uid(a, claims),
      extra: extra(a, claims),
    };
    requiredClaims(a, claims);
    checkRules(a.claimRules, claims);
    checkRules(a.userRules, user);
    return { ok: true, user };
  } catch (error) {
    if (error instanceof Refused)
      return { ok: false, refusal: { field: error.field, message: error.message } };
    throw error;
  }
}
