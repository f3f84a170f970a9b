import type { Config } from '../config.ts';
import { encodeHeaderText, rawHeaderBytes } from '../http/headerValues.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import { AUTHENTICATED_GROUP } from './evaluate.ts';

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
 *
 * Values come from the identity provider and may hold anything (README "Header values"):
 * X-Auth-Request-* and X-Forwarded-* values are percent-encoded where they must be (non-ASCII,
 * control characters, `%`, `,`), so a group never splits and no value can make Node throw;
 * Impersonate-* values go as their UTF-8 bytes, as the API server reads them, and a group that
 * cannot be carried that way (control characters) is left out with a log line. The impersonation
 * guard (impersonationRefusal) has refused the request before a user name that cannot be carried
 * or a `system:` name gets here.
 */

export interface UpstreamSubject {
  readonly identity: Identity;
  /** The token to forward in id-token mode. */
  readonly token: string;
}

export type HeaderValues = Record<string, string | string[]>;
export type UpstreamHeaderPlan = (subject: UpstreamSubject) => HeaderValues;

type Value = (s: UpstreamSubject) => string | string[] | undefined;

/**
 * Joins groups with commas, each encoded (a comma inside a group becomes %2C), keeping whole
 * groups only, within `max` bytes (0: no bound).
 */
export function boundedGroups(groups: readonly string[], max: number): string {
  const encoded = groups.map(encodeHeaderText);
  const joined = encoded.join(',');
  if (max <= 0 || joined.length <= max) return joined;
  let out = '';
  let bytes = 0;
  for (const g of encoded) {
    // Encoded values are ASCII: one byte per character.
    const add = g.length + (out === '' ? 0 : 1);
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
  /** Says which groups were left out of Impersonate-Group. */
  readonly log?: Logger;
}

/** Impersonate-Group lines: each group as its UTF-8 bytes; one that cannot be carried is left out. */
function impersonateGroupLines(identity: Identity, log: Logger | undefined): string[] {
  const lines: string[] = [];
  let dropped = 0;
  for (const group of impersonationGroups(identity)) {
    const raw = rawHeaderBytes(group);
    if (raw === undefined) dropped++;
    else lines.push(raw);
  }
  if (dropped > 0) {
    log?.warn(
      { user: identity.user, dropped },
      'groups with control characters or edge whitespace left out of Impersonate-Group',
    );
  }
  return lines;
}

export function createUpstreamHeaderPlan(options: UpstreamOptions): UpstreamHeaderPlan {
  const { config } = options;
  const impersonate = config.upstreamAuth === 'impersonate';
  const saToken = options.serviceAccountToken ?? (() => '');
  const groups = (s: UpstreamSubject) => boundedGroups(s.identity.groups, config.upstreamGroupsMaxBytes);
  const user = (s: UpstreamSubject) => encodeHeaderText(s.identity.user);
  const email = (s: UpstreamSubject) => encodeHeaderText(s.identity.email ?? '');
  const preferred = (s: UpstreamSubject) => encodeHeaderText(s.identity.preferredUsername ?? '');
  const byName: Record<string, Value> = {
    authorization: impersonate ? () => `Bearer ${saToken()}` : (s) => `Bearer ${s.token}`,
    'x-auth-request-user': user,
    'x-forwarded-user': user,
    'x-auth-request-email': email,
    'x-forwarded-email': email,
    'x-auth-request-groups': groups,
    'x-forwarded-groups': groups,
    'x-auth-request-preferred-username': preferred,
    'x-forwarded-preferred-username': preferred,
    'x-auth-request-id-token': (s) => s.token,
    // The guard refused a user name that cannot go raw; '' is a safe stand-in should one get here.
    'impersonate-user': impersonate ? (s) => rawHeaderBytes(s.identity.user) ?? '' : () => '',
    'impersonate-group': impersonate
      ? (s) => impersonateGroupLines(s.identity, options.log)
      : () => undefined,
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
