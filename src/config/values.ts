import { parse as parseDomain } from 'tldts';
import type { z } from 'zod';
import { parseCidrList } from '../forward/trust.ts';
import { hostPorts, parser, required } from './parsers.ts';
import { cookieSecretProblem } from './secretStrength.ts';
import type { CookieSecret, RawText } from './types.ts';

/** Parsers of the settings that have a grammar of their own: URLs, domains, secrets, addresses. */

export const DEFAULT_TRUSTED_PROXIES = ['127.0.0.0/8', '::1/128'];
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/**
 * The asymmetric JWS algorithms (RS, ES, PS; never none or HS*): the choices of BEARER_ALGORITHMS,
 * and all that AUTHENTICATION_CONFIG issuers accept, as the API server does (identity/jwtIssuers.ts).
 */
export const BEARER_ALGORITHM_CHOICES = [
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] as const;

const absoluteUrl = (text: string): URL | undefined => {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
};

/** The issuer: an absolute http(s) URL without query or fragment (http:// needs a flag: rules.ts). */
export const issuerUrl = (): z.ZodType<string, RawText> =>
  required().superRefine((text, ctx) => {
    const url = absoluteUrl(text);
    const fail = (message: string) => ctx.addIssue({ code: 'custom', message, input: text });
    if (!url) fail(`must be an absolute URL, got "${text}"`);
    else if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('must be an https:// URL');
    if (url && (url.search || url.hash)) fail('must not have a query or fragment');
  });

export const redirectUrl = (): z.ZodType<string | undefined, RawText> =>
  parser((text, fail) => {
    if (text === undefined) return undefined;
    const url = absoluteUrl(text);
    if (url && (url.protocol === 'https:' || url.protocol === 'http:')) return url.toString();
    fail(`must be an absolute http(s) URL, got "${text}"`);
    return undefined;
  });

/** `id:secret,id:secret`: the first seals, all unseal. Never echoes a secret. */
export const cookieSecretList = (): z.ZodType<readonly CookieSecret[] | undefined, RawText> =>
  parser((text, fail) => {
    if (text === undefined) return undefined;
    const secrets: CookieSecret[] = [];
    for (const [i, entry] of text.split(',').entries()) {
      const at = entry.indexOf(':');
      const id = at > 0 ? entry.slice(0, at).trim() : '';
      const secret = at > 0 ? entry.slice(at + 1).trim() : '';
      if (!/^[A-Za-z0-9_.-]{1,32}$/.test(id) || secret === '') {
        fail(`entry ${i + 1} must look like id:secret (id of letters, digits, - _ .)`);
        continue;
      }
      if (secrets.some((s) => s.id === id)) fail(`id "${id}" appears twice`);
      const problem = cookieSecretProblem(`secret "${id}"`, secret);
      if (problem) fail(problem);
      secrets.push({ id, secret });
    }
    return Object.freeze(secrets);
  });

/**
 * A parent domain for the session cookie. A public suffix (`com`, `co.uk`, `github.io`, per the
 * Public Suffix List, private section included) or a single label is refused: browsers drop such
 * cookies, and where they do not, every site under the suffix would receive the session.
 */
export const cookieDomain = (): z.ZodType<string | undefined, RawText> =>
  parser((text, fail) => {
    const domain = text?.trim().toLowerCase() || undefined;
    if (domain === undefined) return undefined;
    if (!/^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain)) {
      fail(`must be a domain such as .example.com, got "${text?.trim()}"`);
      return domain;
    }
    const host = domain.replace(/^\./, '');
    const parsed = parseDomain(host, { allowPrivateDomains: true });
    if (parsed.isIp) return domain;
    if (!host.includes('.')) {
      fail(
        `${domain} is a single-label (top-level) domain: browsers refuse such cookies; use your own domain, e.g. .example.com`,
      );
    } else if (parsed.domain === null) {
      fail(
        `${domain} is a public suffix (${parsed.publicSuffix} is on the Public Suffix List): browsers refuse such cookies, and every site under it would get the session; use your own domain, e.g. .example.com`,
      );
    }
    return domain;
  });

export const redisUrl = (): z.ZodType<string | undefined, RawText> =>
  parser((text, fail) => {
    if (text === undefined) return undefined;
    const url = absoluteUrl(text);
    if (url?.protocol !== 'redis:' && url?.protocol !== 'rediss:')
      fail('must be a redis:// or rediss:// URL');
    return text;
  });

export const hostPortList = (): z.ZodType<readonly { host: string; port: number }[] | undefined, RawText> =>
  parser((text, fail) => {
    if (text === undefined) return undefined;
    const nodes = hostPorts(text);
    if (!nodes || nodes.length === 0) fail('must be a list of host:port');
    return nodes;
  });

export const cidrProblem = (entries: readonly string[]): string | undefined => {
  try {
    parseCidrList(entries);
    return undefined;
  } catch (error) {
    return `: ${(error as Error).message}`;
  }
};

export const redirectDomainProblem = (d: string): string | undefined =>
  /^\.?[a-z0-9*]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/.test(d)
    ? undefined
    : `entry "${d}" is not a host name or .suffix`;

export const bearerAlgorithmProblem = (alg: string): string | undefined =>
  (BEARER_ALGORITHM_CHOICES as readonly string[]).includes(alg)
    ? undefined
    : `entry "${alg}" is not allowed: use ${BEARER_ALGORITHM_CHOICES.join(', ')} (never none or HS*)`;

export const upstreamAuth = (): z.ZodType<'id-token' | 'impersonate', RawText> =>
  parser((text, fail) => {
    const mode = text?.trim().toLowerCase() || 'id-token';
    if (mode !== 'id-token' && mode !== 'impersonate') fail(`must be id-token or impersonate, got "${text}"`);
    return mode as 'id-token' | 'impersonate';
  });

export const TOKEN_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const;
export type TokenAuthMethodSetting = (typeof TOKEN_AUTH_METHODS)[number];

/** Unset: chosen from discovery at start (src/oidc/profile.ts). */
export const tokenAuthMethod = (): z.ZodType<TokenAuthMethodSetting | undefined, RawText> =>
  parser((text, fail) => {
    const method = text?.trim().toLowerCase();
    if (!method) return undefined;
    if (!(TOKEN_AUTH_METHODS as readonly string[]).includes(method)) {
      fail(`must be one of ${TOKEN_AUTH_METHODS.join(', ')}, got "${text}"`);
      return undefined;
    }
    return method as TokenAuthMethodSetting;
  });

export const port = (): z.ZodType<number, RawText> =>
  parser((text, fail) => {
    const value = Number(text ?? '4180');
    if (!Number.isInteger(value) || value < 0 || value > 65535) fail(`must be a port number, got "${text}"`);
    return value;
  });

/** A port that may be unset (undefined). */
export const optionalPort = (): z.ZodType<number | undefined, RawText> =>
  parser((text, fail) => {
    const t = text?.trim();
    if (t === undefined || t === '') return undefined;
    const value = Number(t);
    if (!/^\d{1,5}$/.test(t) || value > 65535) fail(`must be a port number, got "${t}"`);
    return value;
  });

export const logLevel = (): z.ZodType<string, RawText> =>
  parser((text, fail) => {
    const level = (text ?? 'info').toLowerCase();
    if (!LOG_LEVELS.includes(level)) fail(`must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
    return level;
  });
