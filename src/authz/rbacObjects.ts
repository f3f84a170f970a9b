/**
 * The Kubernetes RBAC objects URL authorization reads — ClusterRoles (with `nonResourceURLs` rules,
 * possibly aggregated) and ClusterRoleBindings — from YAML files or from the API server's JSON
 * (the field names are the same). Other kinds are ignored; malformed RBAC objects are reported.
 */
import { RE2JS } from 're2js';

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values: readonly string[];
}

export interface LabelSelector {
  readonly matchLabels: Readonly<Record<string, string>>;
  readonly matchExpressions: readonly LabelSelectorRequirement[];
}

export interface PolicyRule {
  readonly verbs: readonly string[];
  readonly nonResourceURLs: readonly string[];
}

/**
 * Whether an object may grant dashboard URLs (README "Kubernetes' own RBAC objects"):
 * - `opt-in`: annotated `dex-forward-auth/dashboards: "true"`: grants, `system:` subjects included;
 * - `opt-out`: annotated `dex-forward-auth/dashboards: "false"`: never grants;
 * - `kubernetes`: one of Kubernetes' own (label `kubernetes.io/bootstrapping: rbac-defaults`, or
 *   a `system:` name): written for the API server's paths, never grants dashboard URLs;
 * - `default`: grants to its User and Group subjects, except `system:` ones.
 */
export type DashboardScope = 'opt-in' | 'opt-out' | 'kubernetes' | 'default';

export const DASHBOARDS_ANNOTATION = 'dex-forward-auth/dashboards';
export const BOOTSTRAP_LABEL = 'kubernetes.io/bootstrapping';

export interface ClusterRole {
  readonly kind: 'ClusterRole';
  readonly name: string;
  readonly scope: DashboardScope;
  readonly labels: Readonly<Record<string, string>>;
  readonly rules: readonly PolicyRule[];
  /** Selectors of an aggregated ClusterRole (its rules are the union of the selected roles'). */
  readonly aggregation: readonly LabelSelector[] | undefined;
}

export interface Subject {
  readonly kind: string;
  readonly name: string;
}

export interface ClusterRoleBinding {
  readonly kind: 'ClusterRoleBinding';
  readonly name: string;
  readonly scope: DashboardScope;
  readonly roleRef: { readonly kind: string; readonly name: string };
  readonly subjects: readonly Subject[];
}

export type RbacObject = ClusterRole | ClusterRoleBinding;

export interface RbacObjects {
  readonly roles: readonly ClusterRole[];
  readonly bindings: readonly ClusterRoleBinding[];
}

export const NO_RBAC_OBJECTS: RbacObjects = Object.freeze({ roles: [], bindings: [] });

/** The request as RBAC sees it. */
export interface UrlRequest {
  /** Lower-cased HTTP method. */
  readonly verb: string;
  readonly scheme: string;
  /** Lower-case, with a non-default port. */
  readonly host: string;
  /** Canonical (decoded) path, without the query. */
  readonly path: string;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringList(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) return undefined;
  return v as string[];
}

function stringMap(v: unknown): Record<string, string> | undefined {
  if (v === undefined || v === null) return {};
  if (!isObject(v) || Object.values(v).some((s) => typeof s !== 'string')) return undefined;
  return v as Record<string, string>;
}

function parseSelector(v: unknown, where: string, problems: string[]): LabelSelector | undefined {
  if (!isObject(v)) {
    problems.push(`${where}: a clusterRoleSelector must be a mapping`);
    return undefined;
  }
  const matchLabels = stringMap(v['matchLabels']);
  if (!matchLabels) {
    problems.push(`${where}: matchLabels must map strings to strings`);
    return undefined;
  }
  const matchExpressions: LabelSelectorRequirement[] = [];
  const rawExpressions = v['matchExpressions'] ?? [];
  if (!Array.isArray(rawExpressions)) {
    problems.push(`${where}: matchExpressions must be a list`);
    return undefined;
  }
  for (const e of rawExpressions) {
    const values = isObject(e) ? stringList(e['values']) : undefined;
    const operator = isObject(e) ? e['operator'] : undefined;
    if (
      !isObject(e) ||
      typeof e['key'] !== 'string' ||
      !values ||
      (operator !== 'In' && operator !== 'NotIn' && operator !== 'Exists' && operator !== 'DoesNotExist')
    ) {
      problems.push(
        `${where}: a matchExpression needs key, operator (In, NotIn, Exists, DoesNotExist), values`,
      );
      return undefined;
    }
    matchExpressions.push({ key: e['key'], operator, values });
  }
  return { matchLabels, matchExpressions };
}

function scopeOf(
  name: string,
  labels: Readonly<Record<string, string>> | undefined,
  annotations: Readonly<Record<string, string>> | undefined,
): DashboardScope {
  const said = annotations?.[DASHBOARDS_ANNOTATION]?.trim().toLowerCase();
  if (said === 'true') return 'opt-in';
  if (said === 'false') return 'opt-out';
  if (labels?.[BOOTSTRAP_LABEL] === 'rbac-defaults' || name.startsWith('system:')) return 'kubernetes';
  return 'default';
}

/** What every RBAC object carries: its kind, name, labels and dashboard scope. */
interface ObjectHead {
  readonly kind: RbacObject['kind'];
  readonly name: string;
  readonly at: string;
  readonly scope: DashboardScope;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * One Kubernetes object → a ClusterRole or ClusterRoleBinding; `ignored` for other kinds (a file
 * may hold a whole chart's output); problems for malformed RBAC objects. `List` kinds are expanded
 * by the caller through `expandLists`.
 */
export function parseRbacObject(
  obj: unknown,
  where: string,
  problems: string[],
): RbacObject | 'ignored' | undefined {
  if (!isObject(obj)) {
    problems.push(`${where}: expected a Kubernetes object (a mapping)`);
    return undefined;
  }
  const kind = obj['kind'];
  if (kind !== 'ClusterRole' && kind !== 'ClusterRoleBinding') return 'ignored';
  const head = parseHead(obj, kind, where, problems);
  if (!head) return undefined;
  return kind === 'ClusterRole' ? parseClusterRole(obj, head, problems) : parseBinding(obj, head, problems);
}

function parseHead(
  obj: Json,
  kind: RbacObject['kind'],
  where: string,
  problems: string[],
): ObjectHead | undefined {
  const metadata = isObject(obj['metadata']) ? obj['metadata'] : {};
  const name = metadata['name'];
  if (typeof name !== 'string' || name === '') {
    problems.push(`${where}: ${kind} without metadata.name`);
    return undefined;
  }
  const at = `${where}: ${kind} ${name}`;
  const labels = stringMap(metadata['labels']);
  const annotations = stringMap(metadata['annotations']);
  if (!labels || !annotations) {
    problems.push(`${at}: metadata.labels and metadata.annotations must map strings to strings`);
    return undefined;
  }
  return { kind, name, at, scope: scopeOf(name, labels, annotations), labels };
}

function parseClusterRole(obj: Json, head: ObjectHead, problems: string[]): ClusterRole | undefined {
  const rules = parseRules(obj['rules'] ?? [], head.at, problems);
  if (!rules) return undefined;
  const aggregation = parseAggregation(obj['aggregationRule'], head.at, problems);
  if (aggregation === null) return undefined;
  const { name, scope, labels } = head;
  return { kind: 'ClusterRole', name, scope, labels, rules, aggregation };
}

/** The rules that name URLs (a rule of resources only grants no dashboard URL). */
function parseRules(rawRules: unknown, at: string, problems: string[]): PolicyRule[] | undefined {
  if (!Array.isArray(rawRules)) {
    problems.push(`${at}: rules must be a list`);
    return undefined;
  }
  const rules: PolicyRule[] = [];
  for (const [i, r] of rawRules.entries()) {
    const rule = parseRule(r, `${at}: rules[${i}]`, problems);
    if (!rule) return undefined;
    if (rule.nonResourceURLs.length > 0) rules.push(rule);
  }
  return rules;
}

function parseRule(r: unknown, at: string, problems: string[]): PolicyRule | undefined {
  const verbs = isObject(r) ? stringList(r['verbs']) : undefined;
  const urls = isObject(r) ? stringList(r['nonResourceURLs']) : undefined;
  if (!verbs || !urls) {
    problems.push(`${at}.verbs and .nonResourceURLs must be lists of strings`);
    return undefined;
  }
  for (const url of urls) {
    const problem = urlPatternProblem(url);
    if (problem) {
      problems.push(`${at}.nonResourceURLs entry "${url}": ${problem}`);
      return undefined;
    }
  }
  return { verbs, nonResourceURLs: urls };
}

/** An aggregated ClusterRole's selectors; undefined when it is not aggregated, null when malformed. */
function parseAggregation(raw: unknown, at: string, problems: string[]): LabelSelector[] | undefined | null {
  if (!isObject(raw)) return undefined;
  const selectors = raw['clusterRoleSelectors'] ?? [];
  if (!Array.isArray(selectors)) {
    problems.push(`${at}: aggregationRule.clusterRoleSelectors must be a list`);
    return null;
  }
  const aggregation: LabelSelector[] = [];
  for (const s of selectors) {
    const selector = parseSelector(s, at, problems);
    if (!selector) return null;
    aggregation.push(selector);
  }
  return aggregation;
}

function parseBinding(obj: Json, head: ObjectHead, problems: string[]): ClusterRoleBinding | undefined {
  const { at, name, scope } = head;
  const roleRef = obj['roleRef'];
  if (!isObject(roleRef) || typeof roleRef['name'] !== 'string' || typeof roleRef['kind'] !== 'string') {
    problems.push(`${at}: roleRef needs kind and name`);
    return undefined;
  }
  const subjects = parseSubjects(obj['subjects'] ?? [], at, problems);
  if (!subjects) return undefined;
  return {
    kind: 'ClusterRoleBinding',
    name,
    scope,
    roleRef: { kind: roleRef['kind'], name: roleRef['name'] },
    subjects,
  };
}

function parseSubjects(rawSubjects: unknown, at: string, problems: string[]): Subject[] | undefined {
  if (!Array.isArray(rawSubjects)) {
    problems.push(`${at}: subjects must be a list`);
    return undefined;
  }
  const subjects: Subject[] = [];
  for (const s of rawSubjects) {
    if (!isObject(s) || typeof s['kind'] !== 'string' || typeof s['name'] !== 'string') {
      problems.push(`${at}: every subject needs kind and name`);
      return undefined;
    }
    subjects.push({ kind: s['kind'], name: s['name'] });
  }
  return subjects;
}

/** `kind: List` (and `ClusterRoleList`, `ClusterRoleBindingList`) → their items; other objects as they are. */
export function expandLists(doc: unknown): unknown[] {
  if (isObject(doc) && typeof doc['kind'] === 'string' && doc['kind'].endsWith('List')) {
    return Array.isArray(doc['items']) ? doc['items'].flatMap(expandLists) : [];
  }
  return [doc];
}

/** A URL entry longer than this is refused: no real path needs it, and matching costs grow with it. */
export const MAX_URL_PATTERN_LENGTH = 1024;

function urlPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'empty';
  if (pattern.length > MAX_URL_PATTERN_LENGTH) return `longer than ${MAX_URL_PATTERN_LENGTH} characters`;
  if (pattern.startsWith('~')) {
    try {
      RE2JS.compile(pattern.slice(1));
    } catch (error) {
      return `not a regular expression in RE2 syntax, as D2iQ's (Go) matcher read it; backreferences and lookaround are not supported (${(error as Error).message})`;
    }
  }
  return undefined;
}
