import type { Config } from '../config.ts';
import { AUTHENTICATED_GROUP } from './evaluate.ts';
import type { Identity } from './identity.ts';

/**
 * The headers a 2xx answer sets for the upstream (DESIGN §4.7): every configured name, empty when
 * there is no value, so a client can never smuggle its own.
 *
 * UPSTREAM_AUTH=id-token (default): `Authorization: Bearer <the user's ID token>` (or, for bearer
 * pass-through, the caller's own token, unchanged).
 * UPSTREAM_AUTH=impersonate: `Authorization: Bearer <the pod's service-account token>` plus
 * `Impersonate-User` and one `Impersonate-Group` line per group (prefixed, and
 * `system:authenticated`), for API proxies that trust this service rather than OIDC.
 *
 * `Impersonate-Group` is never sent empty: the API server refuses groups without a user, so in
 * id-token mode it is left out (the proxy must strip client copies: see README,
 * authResponseHeadersRegex). `Impersonate-User` is sent empty there, which the API server ignores.
 */

export interface UpstreamSubject {
  readonly identity: Identity;
  /** The token to forward in id-token mode. */
  readonly token: string;
}

export type HeaderValues = Record<string, string | string[]>;
export type UpstreamHeaderPlan = (subject: UpstreamSubject) => HeaderValues;

type Value = (s: UpstreamSubject) => string | string[] | undefined;

/** Joins groups with commas, keeping whole groups only, within `max` bytes (0: no bound). */
export function boundedGroups(groups: readonly string[], max: number): string {
  const joined = groups.join(',');
  if (max <= 0 || Buffer.byteLength(joined) <= max) return joined;
  let out = '';
  let bytes = 0;
  for (const g of groups) {
    const add = Buffer.byteLength(g) + (out === '' ? 0 : 1);
    if (bytes + add > max) break;
    out = out === '' ? g : `${out},${g}`;
    bytes += add;
  }
  return out;
}

export function impersonationGroups(identity: Identity): string[] {
  return identity.groups.includes(AUTHENTICATED_GROUP)
    ? [...identity.groups]
    : [...identity.groups, AUTHENTICATED_GROUP];
}

export interface UpstreamOptions {
  readonly config: Pick<Config, 'upstreamHeaders' | 'upstreamAuth' | 'upstreamGroupsMaxBytes'>;
  /** The service-account token, read fresh on each call (impersonation mode). */
  readonly serviceAccountToken?: () => string;
}

export function createUpstreamHeaderPlan(options: UpstreamOptions): UpstreamHeaderPlan {
  const { config } = options;
  const impersonate = config.upstreamAuth === 'impersonate';
  const saToken = options.serviceAccountToken ?? (() => '');
  const groups = (s: UpstreamSubject) => boundedGroups(s.identity.groups, config.upstreamGroupsMaxBytes);
  const byName: Record<string, Value> = {
    authorization: impersonate ? () => `Bearer ${saToken()}` : (s) => `Bearer ${s.token}`,
    'x-auth-request-user': (s) => s.identity.user,
    'x-forwarded-user': (s) => s.identity.user,
    'x-auth-request-email': (s) => s.identity.email ?? '',
    'x-forwarded-email': (s) => s.identity.email ?? '',
    'x-auth-request-groups': groups,
    'x-forwarded-groups': groups,
    'x-auth-request-preferred-username': (s) => s.identity.preferredUsername ?? '',
    'x-forwarded-preferred-username': (s) => s.identity.preferredUsername ?? '',
    'x-auth-request-id-token': (s) => s.token,
    'impersonate-user': impersonate ? (s) => s.identity.user : () => '',
    'impersonate-group': impersonate ? (s) => impersonationGroups(s.identity) : () => undefined,
    // Never emitted, even empty: an empty UID or extra would make the API server refuse the request.
    'impersonate-uid': () => undefined,
  };
  const names = [...config.upstreamHeaders];
  if (impersonate) {
    for (const required of ['Authorization', 'Impersonate-User', 'Impersonate-Group']) {
      if (!names.some((n) => n.toLowerCase() === required.toLowerCase())) names.push(required);
    }
  }
  const plan = names.map((name) => {
    const lower = name.toLowerCase();
    const value: Value = byName[lower] ?? (lower.startsWith('impersonate-') ? () => undefined : () => '');
    return [name, value] as const;
  });
  return (subject) => {
    const headers: HeaderValues = {};
    for (const [name, value] of plan) {
      const v = value(subject);
      if (v !== undefined) headers[name] = v;
    }
    return headers;
  };
}
