import { X509Certificate } from 'node:crypto';
import type {
  AuthenticationConfigurationFile,
  JwtAuthenticatorSpec,
  PrefixedClaimOrExpression,
} from './authenticationConfig.ts';
import { CelCompileError, type CelProgram, type CelVariable, compileCel } from './cel.ts';

/**
 * The API server's checks of an AuthenticationConfiguration (k8s.io/apiserver
 * pkg/apis/apiserver/validation: ValidateAuthenticationConfiguration and
 * CompileAndValidateJWTAuthenticator), CEL compilation included. Every problem is reported at
 * once, each naming its field as the API server does (`jwt[0].claimMappings.username.expression`).
 */

export type ClaimMapping =
  | { readonly claim: string; readonly prefix: string }
  | { readonly program: CelProgram };

export interface CompiledRule {
  readonly expression: string;
  readonly message: string;
  /** Where the rule is in the file, e.g. `jwt[0].claimValidationRules[1]`. */
  readonly field: string;
  readonly program: CelProgram;
}

export interface CompiledJwtAuthenticator {
  readonly index: number;
  readonly issuerUrl: string;
  readonly discoveryUrl: string | undefined;
  readonly certificateAuthority: string | undefined;
  readonly audiences: readonly string[];
  readonly username: ClaimMapping;
  readonly groups: ClaimMapping | undefined;
  readonly uid: { readonly claim: string } | { readonly program: CelProgram } | undefined;
  readonly extra: readonly { readonly key: string; readonly program: CelProgram }[];
  /** claim → required value (claimValidationRules with `claim`). */
  readonly requiredClaims: ReadonlyMap<string, string>;
  readonly claimRules: readonly CompiledRule[];
  readonly userRules: readonly CompiledRule[];
}

export interface ValidationOptions {
  /** OIDC_ALLOW_INSECURE_HTTP: accept http:// issuer and discovery URLs (demos and tests only). */
  readonly allowInsecureHttp?: boolean;
}

class Problems {
  readonly list: string[] = [];
  add(field: string, message: string): void {
    this.list.push(`${field}: ${message}`);
  }
  compile(
    field: string,
    expression: string,
    variable: CelVariable,
    mustBeBool: boolean,
  ): CelProgram | undefined {
    try {
      return compileCel(expression, variable, mustBeBool);
    } catch (error) {
      if (!(error instanceof CelCompileError)) throw error;
      this.add(field, `Invalid value: ${JSON.stringify(expression)}: ${error.message}`);
      return undefined;
    }
  }
}

function checkUrl(value: string, field: string, problems: Problems, options: ValidationOptions): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.add(field, `Invalid value: ${JSON.stringify(value)}: not a URL`);
    return;
  }
  const insecureOk = options.allowInsecureHttp === true && url.protocol === 'http:';
  if (url.protocol !== 'https:' && !insecureOk)
    problems.add(field, `Invalid value: ${JSON.stringify(value)}: URL scheme must be https`);
  if (url.username || url.password) problems.add(field, 'URL must not contain a username or password');
  if (url.search)
    problems.add(field, `Invalid value: ${JSON.stringify(value)}: URL must not contain a query`);
  if (url.hash)
    problems.add(field, `Invalid value: ${JSON.stringify(value)}: URL must not contain a fragment`);
}

function checkIssuer(
  spec: JwtAuthenticatorSpec['issuer'],
  at: string,
  problems: Problems,
  options: ValidationOptions,
): void {
  if (spec.url === '') problems.add(`${at}.url`, 'Required value');
  else checkUrl(spec.url, `${at}.url`, problems, options);
  if (spec.discoveryURL !== '') {
    if (spec.url !== '' && spec.url.replace(/\/+$/, '') === spec.discoveryURL.replace(/\/+$/, '')) {
      problems.add(`${at}.discoveryURL`, 'discoveryURL must be different from URL');
    }
    checkUrl(spec.discoveryURL, `${at}.discoveryURL`, problems, options);
  }
  if (spec.audiences.length === 0)
    problems.add(`${at}.audiences`, `Required value: at least one ${at}.audiences is required`);
  const seen = new Set<string>();
  for (const [i, audience] of spec.audiences.entries()) {
    if (audience === '') problems.add(`${at}.audiences[${i}]`, 'Required value');
    if (seen.has(audience))
      problems.add(`${at}.audiences[${i}]`, `Duplicate value: ${JSON.stringify(audience)}`);
    seen.add(audience);
  }
  const policy = spec.audienceMatchPolicy;
  if (spec.audiences.length > 1 && policy !== 'MatchAny') {
    problems.add(`${at}.audienceMatchPolicy`, 'audienceMatchPolicy must be MatchAny for multiple audiences');
  }
  if (spec.audiences.length === 1 && policy !== '' && policy !== 'MatchAny') {
    problems.add(
      `${at}.audienceMatchPolicy`,
      'audienceMatchPolicy must be empty or MatchAny for single audience',
    );
  }
  if (spec.certificateAuthority !== '')
    checkCertificates(spec.certificateAuthority, `${at}.certificateAuthority`, problems);
  const egress = spec.egressSelectorType;
  if (egress !== '' && egress !== 'controlplane' && egress !== 'cluster') {
    problems.add(`${at}.egressSelectorType`, 'egress selector must be either controlplane or cluster');
  }
}

function checkCertificates(pem: string, field: string, problems: Problems): void {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    problems.add(
      field,
      'Invalid value: "<omitted>": data does not contain any valid RSA or ECDSA certificates',
    );
    return;
  }
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (error) {
      problems.add(field, `Invalid value: "<omitted>": ${(error as Error).message}`);
    }
  }
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const HTTP_PATH = /^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/;

function checkExtraKey(key: string, field: string, problems: Problems): void {
  const slash = key.indexOf('/');
  const domain = slash > 0 ? key.slice(0, slash) : '';
  const path = slash > 0 ? key.slice(slash + 1) : '';
  if (key === '') problems.add(field, 'Required value');
  else if (domain === '' || path === '') {
    problems.add(
      field,
      `Invalid value: ${JSON.stringify(key)}: must be a domain-prefixed path (such as "acme.io/foo")`,
    );
  } else {
    if (domain.length > 253 || !DNS_SUBDOMAIN.test(domain)) {
      problems.add(
        field,
        `Invalid value: ${JSON.stringify(domain)}: a lowercase RFC 1123 subdomain is required`,
      );
    }
    if (!HTTP_PATH.test(path))
      problems.add(field, `Invalid value: ${JSON.stringify(path)}: must be a valid path`);
  }
  if (key !== key.toLowerCase())
    problems.add(field, `Invalid value: ${JSON.stringify(key)}: must be lowercase`);
  if (/(^|\.)(kubernetes\.io|k8s\.io)$/.test(domain)) {
    problems.add(
      field,
      `Invalid value: ${JSON.stringify(key)}: k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use`,
    );
  }
}

/** Whether the AST selects `claims.<field>` (or `claims.?<field>`), as the API server looks for it. */
export function selectsClaim(node: unknown, field: string): boolean {
  if (Array.isArray(node)) return node.some((child) => selectsClaim(child, field));
  if (node === null || typeof node !== 'object' || !('op' in node)) return false;
  const { op, args } = node as { op: string; args: unknown };
  if ((op === '.' || op === '.?') && Array.isArray(args)) {
    const operand = args[0] as { op?: string; args?: unknown } | undefined;
    if (operand?.op === 'id' && operand.args === 'claims' && args[1] === field) return true;
  }
  return selectsClaim(args, field);
}

interface State {
  usesEmail: boolean;
  usesEmailVerified: boolean;
}

function compileClaimRules(spec: JwtAuthenticatorSpec, at: string, problems: Problems, state: State) {
  const requiredClaims = new Map<string, string>();
  const claimRules: CompiledRule[] = [];
  const seenExpressions = new Set<string>();
  for (const [i, rule] of spec.claimValidationRules.entries()) {
    const field = `${at}.claimValidationRules[${i}]`;
    if (rule.claim !== '' && rule.expression !== '') {
      problems.add(
        field,
        `Invalid value: ${JSON.stringify(rule.claim)}: claim and expression can't both be set`,
      );
    } else if (rule.claim === '' && rule.expression === '') {
      problems.add(field, 'Required value: claim or expression is required');
    } else if (rule.claim !== '') {
      if (rule.message !== '') problems.add(`${field}.message`, 'may not be specified when claim is set');
      if (requiredClaims.has(rule.claim))
        problems.add(`${field}.claim`, `Duplicate value: ${JSON.stringify(rule.claim)}`);
      requiredClaims.set(rule.claim, rule.requiredValue);
    } else {
      if (rule.requiredValue !== '') {
        problems.add(`${field}.requiredValue`, 'may not be specified when expression is set');
      }
      if (seenExpressions.has(rule.expression)) {
        problems.add(`${field}.expression`, `Duplicate value: ${JSON.stringify(rule.expression)}`);
        continue;
      }
      seenExpressions.add(rule.expression);
      const program = problems.compile(`${field}.expression`, rule.expression, 'claims', true);
      if (!program) continue;
      state.usesEmailVerified ||= selectsClaim(program.ast, 'email_verified');
      claimRules.push({ expression: rule.expression, message: rule.message, field, program });
    }
  }
  return { requiredClaims, claimRules };
}

function compilePrefixed(
  mapping: PrefixedClaimOrExpression,
  field: string,
  required: boolean,
  problems: Problems,
): ClaimMapping | undefined {
  if (mapping.expression !== '' && mapping.claim !== '') {
    problems.add(field, `Invalid value: "": claim and expression can't both be set`);
  } else if (mapping.expression !== '') {
    if (mapping.prefix !== undefined)
      problems.add(`${field}.prefix`, 'may not be specified when expression is set');
    const program = problems.compile(`${field}.expression`, mapping.expression, 'claims', false);
    return program ? { program } : undefined;
  } else if (mapping.claim !== '') {
    if (mapping.prefix === undefined) {
      problems.add(
        `${field}.prefix`,
        'Required value: prefix is required when claim is set. It can be set to an empty string to disable prefixing',
      );
      return undefined;
    }
    return { claim: mapping.claim, prefix: mapping.prefix };
  } else if (required) {
    problems.add(field, 'Required value: claim or expression is required');
  }
  return undefined;
}

function compileExtra(spec: JwtAuthenticatorSpec, at: string, problems: Problems, state: State) {
  const extra: { key: string; program: CelProgram }[] = [];
  const seen = new Set<string>();
  for (const [i, mapping] of spec.claimMappings.extra.entries()) {
    const field = `${at}.claimMappings.extra[${i}]`;
    checkExtraKey(mapping.key, `${field}.key`, problems);
    if (seen.has(mapping.key)) {
      problems.add(`${field}.key`, `Duplicate value: ${JSON.stringify(mapping.key)}`);
      continue;
    }
    seen.add(mapping.key);
    if (mapping.valueExpression === '') {
      problems.add(`${field}.valueExpression`, 'Required value');
      continue;
    }
    const program = problems.compile(`${field}.valueExpression`, mapping.valueExpression, 'claims', false);
    if (!program) continue;
    state.usesEmailVerified ||= selectsClaim(program.ast, 'email_verified');
    extra.push({ key: mapping.key, program });
  }
  return extra;
}

function compileMappings(spec: JwtAuthenticatorSpec, at: string, problems: Problems, state: State) {
  const m = spec.claimMappings;
  const username = compilePrefixed(m.username, `${at}.claimMappings.username`, true, problems);
  if (username && 'program' in username) {
    state.usesEmail ||= selectsClaim(username.program.ast, 'email');
    state.usesEmailVerified ||= selectsClaim(username.program.ast, 'email_verified');
  }
  const groups = compilePrefixed(m.groups, `${at}.claimMappings.groups`, false, problems);
  let uid: CompiledJwtAuthenticator['uid'];
  if (m.uid.claim !== '' && m.uid.expression !== '') {
    problems.add(`${at}.claimMappings.uid`, `Invalid value: "": claim and expression can't both be set`);
  } else if (m.uid.expression !== '') {
    const program = problems.compile(`${at}.claimMappings.uid.expression`, m.uid.expression, 'claims', false);
    if (program) uid = { program };
  } else if (m.uid.claim !== '') {
    uid = { claim: m.uid.claim };
  }
  const extra = compileExtra(spec, at, problems, state);
  if (state.usesEmail && !state.usesEmailVerified) {
    problems.add(
      `${at}.claimMappings.username.expression`,
      `Invalid value: ${JSON.stringify(m.username.expression)}: claims.email_verified must be used in claimMappings.username.expression or claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when claims.email is used in claimMappings.username.expression`,
    );
  }
  return { username, groups, uid, extra };
}

function compileUserRules(spec: JwtAuthenticatorSpec, at: string, problems: Problems): CompiledRule[] {
  const rules: CompiledRule[] = [];
  const seen = new Set<string>();
  for (const [i, rule] of spec.userValidationRules.entries()) {
    const field = `${at}.userValidationRules[${i}]`;
    if (rule.expression === '') {
      problems.add(`${field}.expression`, 'Required value');
      continue;
    }
    if (seen.has(rule.expression)) {
      problems.add(`${field}.expression`, `Duplicate value: ${JSON.stringify(rule.expression)}`);
      continue;
    }
    seen.add(rule.expression);
    const program = problems.compile(`${field}.expression`, rule.expression, 'user', true);
    if (program) rules.push({ expression: rule.expression, message: rule.message, field, program });
  }
  return rules;
}

function compileAuthenticator(
  spec: JwtAuthenticatorSpec,
  index: number,
  problems: Problems,
  options: ValidationOptions,
): CompiledJwtAuthenticator | undefined {
  const at = `jwt[${index}]`;
  const before = problems.list.length;
  const state: State = { usesEmail: false, usesEmailVerified: false };
  checkIssuer(spec.issuer, `${at}.issuer`, problems, options);
  const { requiredClaims, claimRules } = compileClaimRules(spec, at, problems, state);
  const { username, groups, uid, extra } = compileMappings(spec, at, problems, state);
  const userRules = compileUserRules(spec, at, problems);
  if (problems.list.length > before || !username) return undefined;
  return {
    index,
    issuerUrl: spec.issuer.url,
    discoveryUrl: spec.issuer.discoveryURL || undefined,
    certificateAuthority: spec.issuer.certificateAuthority || undefined,
    audiences: spec.issuer.audiences,
    username,
    groups,
    uid,
    extra,
    requiredClaims,
    claimRules,
    userRules,
  };
}

/** Validates and compiles a parsed file: the authenticators, or every problem found. */
export function compileAuthenticationConfiguration(
  file: AuthenticationConfigurationFile,
  options: ValidationOptions = {},
): { authenticators: CompiledJwtAuthenticator[]; problems: string[] } {
  const problems = new Problems();
  if (file.jwt.length > 64) {
    problems.add('jwt', `Too many: ${file.jwt.length}: must have at most 64 items`);
    return { authenticators: [], problems: problems.list };
  }
  const authenticators: CompiledJwtAuthenticator[] = [];
  const issuers = new Set<string>();
  const discoveryUrls = new Set<string>();
  for (const [i, spec] of file.jwt.entries()) {
    const compiled = compileAuthenticator(spec, i, problems, options);
    if (compiled) authenticators.push(compiled);
    if (issuers.has(spec.issuer.url))
      problems.add(`jwt[${i}].issuer.url`, `Duplicate value: ${JSON.stringify(spec.issuer.url)}`);
    issuers.add(spec.issuer.url);
    if (spec.issuer.discoveryURL !== '') {
      if (discoveryUrls.has(spec.issuer.discoveryURL)) {
        problems.add(
          `jwt[${i}].issuer.discoveryURL`,
          `Duplicate value: ${JSON.stringify(spec.issuer.discoveryURL)}`,
        );
      }
      discoveryUrls.add(spec.issuer.discoveryURL);
    }
  }
  const anonymous = file.anonymous as { enabled?: unknown; conditions?: unknown } | null | undefined;
  if (
    anonymous &&
    anonymous.enabled !== true &&
    Array.isArray(anonymous.conditions) &&
    anonymous.conditions.length > 0
  ) {
    problems.add('anonymous.conditions', 'enabled should be set to true when conditions are defined');
  }
  return { authenticators, problems: problems.list };
}
