import { parseAllDocuments } from 'yaml';
import { z } from 'zod';

/**
 * The shape of a Kubernetes `AuthenticationConfiguration` file (`apiserver.config.k8s.io/v1`,
 * also v1beta1 and v1alpha1, which have the same `jwt` entries), the file the API server reads
 * with `--authentication-config`. Field names, optionality and pointer semantics follow
 * k8s.io/apiserver pkg/apis/apiserver/v1/types.go: `prefix: ""` is set-and-empty, an absent or
 * null `prefix` is unset. Unknown keys are reported (a typo would otherwise silently change who
 * a user is). Rules about the values are in validation.ts.
 */

const API_VERSIONS = [
  'apiserver.config.k8s.io/v1',
  'apiserver.config.k8s.io/v1beta1',
  'apiserver.config.k8s.io/v1alpha1',
] as const;

const str = z.string();
/** A Go *string: null and absent are both nil. */
const optionalPointer = z
  .string()
  .nullish()
  .transform((v) => (v === null ? undefined : v));
const orEmpty = z
  .string()
  .nullish()
  .transform((v) => v ?? '');
const list = <T extends z.ZodType>(item: T) =>
  z
    .array(item)
    .nullish()
    .transform((v) => v ?? []);

const issuerSchema = z.strictObject({
  url: orEmpty,
  discoveryURL: orEmpty,
  certificateAuthority: orEmpty,
  audiences: list(str),
  audienceMatchPolicy: orEmpty,
  egressSelectorType: orEmpty,
});

const prefixedSchema = z
  .strictObject({ claim: orEmpty, prefix: optionalPointer, expression: orEmpty })
  .nullish()
  .transform((v) => v ?? { claim: '', prefix: undefined, expression: '' });

const claimOrExpressionSchema = z
  .strictObject({ claim: orEmpty, expression: orEmpty })
  .nullish()
  .transform((v) => v ?? { claim: '', expression: '' });

const jwtSchema = z.strictObject({
  issuer: issuerSchema,
  claimValidationRules: list(
    z.strictObject({ claim: orEmpty, requiredValue: orEmpty, expression: orEmpty, message: orEmpty }),
  ),
  claimMappings: z.strictObject({
    username: prefixedSchema,
    groups: prefixedSchema,
    uid: claimOrExpressionSchema,
    extra: list(z.strictObject({ key: orEmpty, valueExpression: orEmpty })),
  }),
  userValidationRules: list(z.strictObject({ expression: orEmpty, message: orEmpty })),
});

const fileSchema = z.strictObject({
  apiVersion: z.enum(API_VERSIONS, { message: `must be one of ${API_VERSIONS.join(', ')}` }),
  kind: z.literal('AuthenticationConfiguration', { message: 'must be AuthenticationConfiguration' }),
  jwt: list(jwtSchema),
  // The anonymous authenticator is the API server's business; accepted and ignored.
  anonymous: z.unknown().optional(),
});

export type AuthenticationConfigurationFile = z.infer<typeof fileSchema>;
export type JwtAuthenticatorSpec = z.infer<typeof jwtSchema>;
export type PrefixedClaimOrExpression = z.infer<typeof prefixedSchema>;

function formatIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
  const message =
    issue.code === 'unrecognized_keys'
      ? `unknown field ${issue.keys.map((k) => `"${k}"`).join(', ')}`
      : issue.message;
  return `${path || '(top level)'}: ${message}`;
}

/** Parses the YAML (or JSON) text; every problem is reported, none thrown. */
export function parseAuthenticationConfiguration(
  text: string,
): { file: AuthenticationConfigurationFile; problems: [] } | { file: undefined; problems: string[] } {
  const docs = parseAllDocuments(text);
  if (docs.length !== 1) {
    return { file: undefined, problems: [`expected one YAML document, found ${docs.length}`] };
  }
  const doc = docs[0] as (typeof docs)[number];
  if (doc.errors.length > 0) {
    return { file: undefined, problems: doc.errors.map((e) => e.message.split('\n')[0] as string) };
  }
  const parsed = fileSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) return { file: undefined, problems: parsed.error.issues.map(formatIssue) };
  return { file: parsed.data, problems: [] };
}
