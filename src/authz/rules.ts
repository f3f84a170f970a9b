import type { Identity } from '../identity/identity.ts';

/**
 * Per-route rules of AUTHZ_CONFIG (DESIGN §6): a host (exact, or `*.domain` for any subdomain) and
 * a path prefix on segment boundaries, allowing users, groups, emails or email domains. Pure
 * functions; the first matching rule decides.
 */

export interface AllowList {
  readonly users: readonly string[];
  readonly groups: readonly string[];
  /** Compared case-insensitively. */
  readonly emails: readonly string[];
  /** `example.com` (exactly), `.example.com` or `*.example.com` (its subdomains), `*` (any). */
  readonly emailDomains: readonly string[];
}

export interface Rule {
  /** 1-based position in the file, for messages. */
  readonly index: number;
  /** Lower-case; `*.example.com` for subdomains; with `:port` only when the rule names one. */
  readonly host: string | undefined;
  /** Path prefix without a trailing slash ('/' for everything). */
  readonly path: string;
  readonly allow: AllowList;
}

export const EMPTY_ALLOW: AllowList = Object.freeze({ users: [], groups: [], emails: [], emailDomains: [] });

function splitPort(host: string): { name: string; port: string | undefined } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(host);
  return m ? { name: m[1] as string, port: m[2] } : { name: host, port: undefined };
}

/**
 * `pattern` as written in a rule (already lower-case) against the request's host (lower-case, with
 * a non-default port). A pattern without a port matches any port.
 */
export function hostMatches(pattern: string | undefined, host: string): boolean {
  if (pattern === undefined) return true;
  const want = splitPort(pattern);
  const have = splitPort(host);
  if (want.port !== undefined && want.port !== have.port) return false;
  if (want.name.startsWith('*.')) {
    const suffix = want.name.slice(1); // ".example.com"
    return have.name.length > suffix.length && have.name.endsWith(suffix);
  }
  return want.name === have.name;
}

/** Prefix match on segment boundaries: `/admin` matches `/admin`, `/admin/`, `/admin/x`, not `/administrator`. */
export function pathMatches(prefix: string, path: string): boolean {
  if (prefix === '/') return true;
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || path.charCodeAt(prefix.length) === 47; // '/'
}

/** A rule's path as written → the form `pathMatches` expects. */
export function normaliseRulePath(path: string | undefined): string {
  if (path === undefined || path === '' || path === '/') return '/';
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

export function emailDomainMatches(pattern: string, email: string): boolean {
  const at = email.lastIndexOf('@');
  if (at < 0) return false;
  const domain = email.slice(at + 1).toLowerCase();
  const p = pattern.toLowerCase();
  if (p === '*') return true;
  if (p.startsWith('*.') || p.startsWith('.')) {
    const suffix = p.startsWith('*.') ? p.slice(1) : p;
    return domain.length > suffix.length && domain.endsWith(suffix);
  }
  return domain === p;
}

/**
 * Whether an allow list admits the identity. `groups` are the identity's groups as the API server
 * names them, plus `system:authenticated`. Emails count only when the token does not say they are
 * unverified.
 */
export function admits(allow: AllowList, identity: Identity, groups: ReadonlySet<string>): boolean {
  if (identity.user !== '' && !identity.user.startsWith('system:') && allow.users.includes(identity.user))
    return true;
  for (const g of allow.groups) if (groups.has(g)) return true;
  const email = identity.email;
  if (email && identity.emailVerified !== false) {
    const lower = email.toLowerCase();
    for (const e of allow.emails) if (e.toLowerCase() === lower) return true;
    for (const d of allow.emailDomains) if (emailDomainMatches(d, email)) return true;
  }
  return false;
}

/** The first rule whose host and path match, if any. `path` is the canonical path. */
export function firstMatchingRule(rules: readonly Rule[], host: string, path: string): Rule | undefined {
  for (const rule of rules) {
    if (hostMatches(rule.host, host) && pathMatches(rule.path, path)) return rule;
  }
  return undefined;
}

/** How a rule is named in messages: `grafana.example.com/admin`, `*.example.com/`, `/admin`. */
export function describeRule(rule: Rule): string {
  return `${rule.host ?? ''}${rule.path}`;
}
