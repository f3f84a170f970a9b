/**
 * Kubernetes RBAC for URLs (DESIGN §6): ClusterRoles with `nonResourceURLs` rules, bound to users
 * and groups by ClusterRoleBindings — the objects the API server uses for `/healthz` or `/metrics`,
 * applied to dashboard URLs, as D2iQ's traefik-forward-auth (Kommander) did.
 *
 * Matching follows Kubernetes (`pkg/apis/rbac/v1/evaluation_helpers.go`):
 *   - a verb matches when the rule lists it (the lower-cased HTTP method) or `*`;
 *   - a path entry (starting with `/`) matches exactly, or by prefix when it ends in `*`; `*` alone
 *     matches everything.
 * D2iQ's forms, which Kubernetes itself never matches against a path, are accepted as it accepted
 * them: a full-URL entry (`https://grafana.example.com/admin/*`) is matched against
 * `scheme://host/path` — where `*` matches within one path segment, `**` across segments, and a
 * trailing `*` by prefix as above — and `~regex` is a regular expression on that full URL.
 *
 * Everything here is a pure function of (objects, identity, request).
 */
import { RE2JS } from 're2js';
import { FOREVER, sharedMemo } from '../memory/shared.ts';
import type {
  ClusterRole,
  DashboardScope,
  LabelSelector,
  PolicyRule,
  RbacObjects,
  Subject,
  UrlRequest,
} from './rbacObjects.ts';

// ---------------------------------------------------------------------------------------------
// Matching

/** Kubernetes' VerbMatches: exact (the request verb is the lower-cased method) or `*`. */
export function verbMatches(rule: PolicyRule, verb: string): boolean {
  return rule.verbs.some((v) => v === '*' || v === verb);
}

/** Counts the work matching does (tests assert on it, never on time). */
export interface MatchWork {
  steps: number;
}

const NO_WORK: MatchWork = { steps: 0 };

/** D2iQ's wildcard form, compiled: a literal character, `*` (any run without `/`) or `**` (any run). */
type GlobToken = number | 'segment' | 'any';

/** Compiled patterns by source (an RE2 program is charged as 2 KB besides its source). */
const compiled = sharedMemo<readonly GlobToken[] | RE2JS | null>('patterns', {
  share: 0.05,
  sizeOf: (made) => (made === null ? 0 : Array.isArray(made) ? 16 + 8 * made.length : 2048),
});

function remember<T extends readonly GlobToken[] | RE2JS | null>(key: string, build: () => T): T {
  const hit = compiled.peek(key, 0);
  if (hit !== undefined) return hit as T;
  const made = build();
  compiled.set(key, made, FOREVER);
  return made;
}

function globTokens(pattern: string): GlobToken[] {
  const tokens: GlobToken[] = [];
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] !== '*') {
      tokens.push(pattern.charCodeAt(i));
      continue;
    }
    let run = 1;
    while (pattern[i + 1] === '*') {
      run++;
      i++;
    }
    // `**` (or a longer run) crosses segments; a lone `*` stays within one.
    tokens.push(run >= 2 ? 'any' : 'segment');
  }
  return tokens;
}

/**
 * Anchored glob match by NFA simulation: the set of pattern positions reachable after each input
 * character. Each character costs at most one step per pattern token, so a match costs
 * O(input × pattern) whatever the pattern (a backtracking regex of `*a*a*a…` is exponential).
 */
export function globMatches(tokens: readonly GlobToken[], input: string, work: MatchWork = NO_WORK): boolean {
  const m = tokens.length;
  let current = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  const close = (set: Uint8Array): void => {
    for (let i = 0; i < m; i++) if (set[i] && typeof tokens[i] === 'string') set[i + 1] = 1;
  };
  current[0] = 1;
  close(current);
  for (let k = 0; k < input.length; k++) {
    const c = input.charCodeAt(k);
    next.fill(0);
    let alive = false;
    for (let i = 0; i < m; i++) {
      if (!current[i]) continue;
      work.steps++;
      const t = tokens[i];
      if (t === 'any' || (t === 'segment' && c !== 47)) {
        next[i] = 1;
        alive = true;
      } else if (t === c) {
        next[i + 1] = 1;
        alive = true;
      }
    }
    if (!alive) return false;
    close(next);
    [current, next] = [next, current];
  }
  return current[m] === 1;
}

/** Lower-cases a full-URL pattern's scheme and host and drops the scheme's default port. */
function normaliseUrlPattern(pattern: string): string {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/]*)(.*)$/i.exec(pattern);
  if (!m) return pattern;
  const scheme = (m[1] as string).toLowerCase();
  let host = (m[2] as string).toLowerCase();
  if (scheme === 'https' && host.endsWith(':443')) host = host.slice(0, -4);
  if (scheme === 'http' && host.endsWith(':80')) host = host.slice(0, -3);
  return `${scheme}://${host}${m[3]}`;
}

/**
 * A `~regex` entry, compiled with RE2 semantics (re2js): matching is linear in the input, and
 * D2iQ's traefik-forward-auth, written in Go, used the same RE2 syntax. Backreferences and
 * lookaround, which need backtracking, are refused when the file is read (urlPatternProblem).
 */
export function compileUrlRegex(source: string): RE2JS {
  return RE2JS.compile(source);
}

/** Kubernetes' NonResourceURLMatches for one entry, plus D2iQ's full-URL and `~regex` forms. */
export function nonResourceURLMatches(
  pattern: string,
  request: Pick<UrlRequest, 'scheme' | 'host' | 'path'>,
  work: MatchWork = NO_WORK,
) {
  work.steps++;
  if (pattern === '*') return true;
  if (pattern.startsWith('/')) {
    if (pattern === request.path) return true;
    return pattern.endsWith('*') && request.path.startsWith(pattern.replace(/\*+$/, ''));
  }
  const full = `${request.scheme}://${request.host}${request.path}`;
  if (pattern.startsWith('~')) {
    const re = remember(pattern, () => {
      try {
        return compileUrlRegex(pattern.slice(1));
      } catch {
        return null;
      }
    });
    work.steps += full.length;
    return re?.test(full) === true;
  }
  const normalised = normaliseUrlPattern(pattern);
  if (normalised === full) return true;
  if (normalised.endsWith('*') && full.startsWith(normalised.replace(/\*+$/, ''))) return true;
  if (!normalised.includes('*')) return false;
  const tokens = remember(`glob:${normalised}`, () => globTokens(normalised));
  return globMatches(tokens, full, work);
}

export function ruleMatches(rule: PolicyRule, request: UrlRequest, work: MatchWork = NO_WORK): boolean {
  return (
    verbMatches(rule, request.verb) &&
    rule.nonResourceURLs.some((p) => nonResourceURLMatches(p, request, work))
  );
}

function selectorMatches(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels)) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (!has || !e.values.includes(value as string)) return false;
        break;
      case 'NotIn':
        if (has && e.values.includes(value as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The index: subject → the effective rules bound to it

/** A rule a subject holds, and the ClusterRoleBinding that grants it (named in the audit stream). */
export interface BoundRule {
  readonly rule: PolicyRule;
  readonly binding: string;
}

export interface RbacIndex {
  /** `User:<name>` or `Group:<name>` → rules granted through any binding. */
  readonly bySubject: ReadonlyMap<string, readonly BoundRule[]>;
  /** Every (subject, rules) pair, for "what would have allowed it". */
  readonly grants: readonly {
    readonly subject: Subject;
    readonly role: string;
    readonly rules: readonly PolicyRule[];
  }[];
  readonly roles: number;
  readonly bindings: number;
  /** Bindings that name a ClusterRole that does not exist (allowed by Kubernetes; worth a log line). */
  readonly dangling: readonly string[];
  /** Bindings that grant no dashboard URLs: Kubernetes' own, or opted out (see DashboardScope). */
  readonly kubernetesOnly: number;
}

/**
 * The effective rules of each ClusterRole: its own, plus — for an aggregated role — those of every
 * role its selectors pick (as the API server's aggregation controller fills them in).
 */
function effectiveRules(roles: readonly ClusterRole[]): Map<string, PolicyRule[]> {
  const byName = new Map(roles.map((r) => [r.name, r]));
  const out = new Map<string, PolicyRule[]>();
  const resolve = (role: ClusterRole, visiting: Set<string>): PolicyRule[] => {
    const done = out.get(role.name);
    if (done) return done;
    const rules = [...role.rules];
    if (role.aggregation && !visiting.has(role.name)) {
      visiting.add(role.name);
      for (const other of byName.values()) {
        // Kubernetes' own roles lend no rules to a dashboard role by aggregation, unless opted in.
        if (other.name === role.name || other.scope === 'kubernetes' || other.scope === 'opt-out') continue;
        if (role.aggregation.some((s) => selectorMatches(s, other.labels))) {
          rules.push(...resolve(other, visiting));
        }
      }
      visiting.delete(role.name);
    }
    if (visiting.size === 0) out.set(role.name, rules);
    return rules;
  };
  for (const role of roles) resolve(role, new Set());
  return out;
}

export function subjectKey(kind: 'User' | 'Group', name: string): string {
  return `${kind}:${name}`;
}

export function buildRbacIndex(objects: RbacObjects): RbacIndex {
  const rules = effectiveRules(objects.roles);
  const bySubject = new Map<string, BoundRule[]>();
  const grants: { subject: Subject; role: string; rules: PolicyRule[] }[] = [];
  const dangling: string[] = [];
  const scopes = new Map(objects.roles.map((r) => [r.name, r.scope]));
  let kubernetesOnly = 0;
  for (const binding of objects.bindings) {
    if (binding.roleRef.kind !== 'ClusterRole') continue;
    const roleRules = rules.get(binding.roleRef.name);
    if (!roleRules) {
      dangling.push(`${binding.name} → ${binding.roleRef.name}`);
      continue;
    }
    const reach = grantsDashboards(binding.scope, scopes.get(binding.roleRef.name) ?? 'default');
    if (reach === 'no') {
      kubernetesOnly++;
      continue;
    }
    for (const subject of binding.subjects) {
      if (subject.kind !== 'User' && subject.kind !== 'Group') continue;
      if (reach === 'non-system' && subject.name.startsWith('system:')) continue;
      const key = subjectKey(subject.kind, subject.name);
      const bound = roleRules.map((rule) => ({ rule, binding: binding.name }));
      const list = bySubject.get(key);
      if (list) list.push(...bound);
      else bySubject.set(key, bound);
      grants.push({ subject, role: binding.roleRef.name, rules: roleRules });
    }
  }
  return {
    bySubject,
    grants,
    roles: objects.roles.length,
    bindings: objects.bindings.length,
    dangling,
    kubernetesOnly,
  };
}

/**
 * Whether a binding grants dashboard URLs, from its own scope and its role's: an opt-out on either
 * wins, then an opt-in on either (every subject, `system:` ones included); Kubernetes' own objects
 * grant nothing; any other binding grants to its subjects but never to a `system:` one (the
 * bootstrap-style `system:authenticated` needs the opt-in).
 */
function grantsDashboards(binding: DashboardScope, role: DashboardScope): 'all' | 'non-system' | 'no' {
  if (binding === 'opt-out' || role === 'opt-out') return 'no';
  if (binding === 'opt-in' || role === 'opt-in') return 'all';
  if (binding === 'kubernetes' || role === 'kubernetes') return 'no';
  return 'non-system';
}

/** Whether a binding grants the user, or one of `groups`, a rule matching the request. */
export function rbacAllows(
  index: RbacIndex,
  user: string,
  groups: Iterable<string>,
  request: UrlRequest,
): boolean {
  return rbacAllowedBy(index, user, groups, request) !== undefined;
}

/** The name of the first binding that grants the user, or one of `groups`, a rule matching the request. */
export function rbacAllowedBy(
  index: RbacIndex,
  user: string,
  groups: Iterable<string>,
  request: UrlRequest,
): string | undefined {
  const check = (key: string): string | undefined =>
    index.bySubject.get(key)?.find((r) => ruleMatches(r.rule, request))?.binding;
  const byUser = user !== '' ? check(subjectKey('User', user)) : undefined;
  if (byUser !== undefined) return byUser;
  for (const g of groups) {
    const byGroup = check(subjectKey('Group', g));
    if (byGroup !== undefined) return byGroup;
  }
  return undefined;
}

/**
 * The users and groups that some binding would allow to make this request (at most `limit` each),
 * for the denial page. Bounded: it looks at no more than `budget` URL entries in all, so a denied
 * request costs at most that many matches whatever the size of the RBAC objects.
 */
export function rbacGrantees(
  index: RbacIndex,
  request: UrlRequest,
  limit = 20,
  budget = 2_000,
  work: MatchWork = { steps: 0 },
): { users: string[]; groups: string[] } {
  const users = new Set<string>();
  const groups = new Set<string>();
  let examined = 0;
  outer: for (const grant of index.grants) {
    const target = grant.subject.kind === 'User' ? users : groups;
    if (target.size >= limit || target.has(grant.subject.name)) continue;
    for (const rule of grant.rules) {
      if (!verbMatches(rule, request.verb)) continue;
      examined += rule.nonResourceURLs.length;
      if (rule.nonResourceURLs.some((p) => nonResourceURLMatches(p, request, work))) {
        target.add(grant.subject.name);
        break;
      }
      if (examined >= budget) break outer;
    }
  }
  return { users: [...users], groups: [...groups] };
}
