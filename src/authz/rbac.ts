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
import type {
  ClusterRole,
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

const globCache = new Map<string, RegExp | null>();

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** D2iQ's wildcard form: `**` any characters, `*` any characters but `/`; anchored. */
function d2iqGlob(pattern: string): RegExp {
  const source = pattern
    .split('**')
    .map((part) => part.split('*').map(escapeRegExp).join('[^/]*'))
    .join('.*');
  return new RegExp(`^${source}$`);
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

function cached(key: string, build: () => RegExp | null): RegExp | null {
  let re = globCache.get(key);
  if (re === undefined) {
    try {
      re = build();
    } catch {
      re = null;
    }
    if (globCache.size > 10_000) globCache.clear();
    globCache.set(key, re);
  }
  return re;
}

/** Kubernetes' NonResourceURLMatches for one entry, plus D2iQ's full-URL and `~regex` forms. */
export function nonResourceURLMatches(
  pattern: string,
  request: Pick<UrlRequest, 'scheme' | 'host' | 'path'>,
) {
  if (pattern === '*') return true;
  if (pattern.startsWith('/')) {
    if (pattern === request.path) return true;
    return pattern.endsWith('*') && request.path.startsWith(pattern.replace(/\*+$/, ''));
  }
  const full = `${request.scheme}://${request.host}${request.path}`;
  if (pattern.startsWith('~')) {
    const re = cached(pattern, () => new RegExp(pattern.slice(1)));
    return re?.test(full) === true;
  }
  const normalised = normaliseUrlPattern(pattern);
  if (normalised === full) return true;
  if (normalised.endsWith('*') && full.startsWith(normalised.replace(/\*+$/, ''))) return true;
  if (!normalised.includes('*')) return false;
  const re = cached(`glob:${normalised}`, () => d2iqGlob(normalised));
  return re?.test(full) === true;
}

export function ruleMatches(rule: PolicyRule, request: UrlRequest): boolean {
  return (
    verbMatches(rule, request.verb) && rule.nonResourceURLs.some((p) => nonResourceURLMatches(p, request))
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

export interface RbacIndex {
  /** `User:<name>` or `Group:<name>` → rules granted through any binding. */
  readonly bySubject: ReadonlyMap<string, readonly PolicyRule[]>;
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
        if (other.name === role.name) continue;
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
  const bySubject = new Map<string, PolicyRule[]>();
  const grants: { subject: Subject; role: string; rules: PolicyRule[] }[] = [];
  const dangling: string[] = [];
  for (const binding of objects.bindings) {
    if (binding.roleRef.kind !== 'ClusterRole') continue;
    const roleRules = rules.get(binding.roleRef.name);
    if (!roleRules) {
      dangling.push(`${binding.name} → ${binding.roleRef.name}`);
      continue;
    }
    for (const subject of binding.subjects) {
      if (subject.kind !== 'User' && subject.kind !== 'Group') continue;
      const key = subjectKey(subject.kind, subject.name);
      const list = bySubject.get(key);
      if (list) list.push(...roleRules);
      else bySubject.set(key, [...roleRules]);
      grants.push({ subject, role: binding.roleRef.name, rules: roleRules });
    }
  }
  return { bySubject, grants, roles: objects.roles.length, bindings: objects.bindings.length, dangling };
}

/** Whether a binding grants the user, or one of `groups`, a rule matching the request. */
export function rbacAllows(
  index: RbacIndex,
  user: string,
  groups: Iterable<string>,
  request: UrlRequest,
): boolean {
  const check = (key: string): boolean => {
    const rules = index.bySubject.get(key);
    return rules?.some((r) => ruleMatches(r, request)) === true;
  };
  if (user !== '' && check(subjectKey('User', user))) return true;
  for (const g of groups) if (check(subjectKey('Group', g))) return true;
  return false;
}

/** The users and groups that some binding would allow to make this request (at most `limit` each). */
export function rbacGrantees(
  index: RbacIndex,
  request: UrlRequest,
  limit = 20,
): { users: string[]; groups: string[] } {
  const users = new Set<string>();
  const groups = new Set<string>();
  for (const grant of index.grants) {
    const target = grant.subject.kind === 'User' ? users : groups;
    if (target.size >= limit || target.has(grant.subject.name)) continue;
    if (grant.rules.some((r) => ruleMatches(r, request))) target.add(grant.subject.name);
  }
  return { users: [...users], groups: [...groups] };
}
