/**
 * The Kubernetes RBAC objects URL authorization reads — ClusterRoles (with `nonResourceURLs` rules,
 * possibly aggregated) and ClusterRoleBindings — from YAML files or from the API server's JSON
 * (the field names are the same). Other kinds are ignored; malformed RBAC objects are reported.
 */

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

export interface ClusterRole {
  readonly kind: 'ClusterRole';
  readonly name: string;
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
  const metadata = isObject(obj['metadata']) ? obj['metadata'] : {};
  const name = metadata['name'];
  if (typeof name !== 'string' || name === '') {
    problems.push(`${where}: ${kind} without metadata.name`);
    return undefined;
  }
  const at = `${where}: ${kind} ${name}`;

  if (kind === 'ClusterRole') {
    const labels = stringMap(metadata['labels']);
    if (!labels) {
      problems.push(`${at}: metadata.labels must map strings to strings`);
      return undefined;
    }
    const rawRules = obj['rules'] ?? [];
    if (!Array.isArray(rawRules)) {
      problems.push(`${at}: rules must be a list`);
      return undefined;
    }
    const rules: PolicyRule[] = [];
    for (const [i, r] of rawRules.entries()) {
      const verbs = isObject(r) ? stringList(r['verbs']) : undefined;
      const urls = isObject(r) ? stringList(r['nonResourceURLs']) : undefined;
      if (!verbs || !urls) {
        problems.push(`${at}: rules[${i}].verbs and .nonResourceURLs must be lists of strings`);
        return undefined;
      }
      for (const url of urls) {
        const problem = urlPatternProblem(url);
        if (problem) {
          problems.push(`${at}: rules[${i}].nonResourceURLs entry "${url}": ${problem}`);
          return undefined;
        }
      }
      if (urls.length > 0) rules.push({ verbs, nonResourceURLs: urls });
    }
    let aggregation: LabelSelector[] | undefined;
    const rawAggregation = obj['aggregationRule'];
    if (isObject(rawAggregation)) {
      const selectors = rawAggregation['clusterRoleSelectors'] ?? [];
      if (!Array.isArray(selectors)) {
        problems.push(`${at}: aggregationRule.clusterRoleSelectors must be a list`);
        return undefined;
      }
      aggregation = [];
      for (const s of selectors) {
        const selector = parseSelector(s, at, problems);
        if (!selector) return undefined;
        aggregation.push(selector);
      }
    }
    return { kind, name, labels, rules, aggregation };
  }

  const roleRef = obj['roleRef'];
  if (!isObject(roleRef) || typeof roleRef['name'] !== 'string' || typeof roleRef['kind'] !== 'string') {
    problems.push(`${at}: roleRef needs kind and name`);
    return undefined;
  }
  const rawSubjects = obj['subjects'] ?? [];
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
  return { kind, name, roleRef: { kind: roleRef['kind'], name: roleRef['name'] }, subjects };
}

/** `kind: List` (and `ClusterRoleList`, `ClusterRoleBindingList`) → their items; other objects as they are. */
export function expandLists(doc: unknown): unknown[] {
  if (isObject(doc) && typeof doc['kind'] === 'string' && doc['kind'].endsWith('List')) {
    return Array.isArray(doc['items']) ? doc['items'].flatMap(expandLists) : [];
  }
  return [doc];
}

function urlPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'empty';
  if (pattern.startsWith('~')) {
    try {
      new RegExp(pattern.slice(1));
    } catch (error) {
      return `not a regular expression (${(error as Error).message})`;
    }
  }
  return undefined;
}
