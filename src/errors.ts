/**
 * The closed set of errors the service answers with. Each carries a stable code, the HTTP status,
 * a public message safe to show anyone, and internal detail for the logs only.
 */
export type ErrorCode =
  | 'bad_request'
  | 'invalid_forwarded_request'
  | 'not_a_forward_auth_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'email_not_verified'
  | 'login_state_missing'
  | 'login_state_invalid'
  | 'provider_denied'
  | 'provider_error'
  | 'provider_unavailable'
  | 'session_unavailable'
  | 'policy_unavailable'
  | 'rate_limited'
  | 'redirect_loop'
  | 'header_too_large'
  | 'cookie_conflict'
  | 'uri_too_long'
  | 'not_found'
  | 'method_not_allowed'
  | 'internal';

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  invalid_forwarded_request: 400,
  not_a_forward_auth_request: 400,
  unauthenticated: 401,
  forbidden: 403,
  email_not_verified: 403,
  login_state_missing: 400,
  login_state_invalid: 400,
  provider_denied: 403,
  provider_error: 502,
  provider_unavailable: 503,
  session_unavailable: 503,
  policy_unavailable: 503,
  rate_limited: 429,
  redirect_loop: 508,
  header_too_large: 431,
  cookie_conflict: 400,
  uri_too_long: 414,
  not_found: 404,
  method_not_allowed: 405,
  internal: 500,
};

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Text safe to show the user. */
  readonly publicMessage: string;
  /** Detail for logs; never shown. Must not contain tokens or secrets. */
  readonly detail: string | undefined;
  /** Extra response headers (Retry-After, WWW-Authenticate …). */
  readonly headers: Readonly<Record<string, string>>;
  /** Set-Cookie lines to send with the error (e.g. clearing a used login cookie). */
  readonly cookies: readonly string[];
  /** A link the error page offers (e.g. "Sign in again"). */
  readonly action: { readonly href: string; readonly label: string } | undefined;

  constructor(
    code: ErrorCode,
    publicMessage: string,
    options: {
      detail?: string;
      headers?: Record<string, string>;
      cookies?: readonly string[];
      action?: { href: string; label: string };
      cause?: unknown;
    } = {},
  ) {
    super(`${code}: ${publicMessage}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = STATUS[code];
    this.publicMessage = publicMessage;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
    this.cookies = options.cookies ?? [];
    this.action = options.action;
  }
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}

/** Any thrown value as an AppError; unknown errors become a generic 500 whose detail is logged. */
export function toAppError(error: unknown): AppError {
  if (isAppError(error)) return error;
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new AppError('internal', 'Something went wrong on our side.', { detail, cause: error });
}

/**
 * An error's message followed by the causes beneath it: `fetch failed: connect ECONNREFUSED
 * 127.0.0.1:5556`. fetch (undici) and openid-client put the real reason in `cause`, and a
 * connection tried on several addresses fails with an AggregateError of each.
 */
export function describeError(error: unknown, depth = 0): string {
  if (!(error instanceof Error)) return String(error);
  const own =
    error instanceof AggregateError && error.message === ''
      ? error.errors.map((e) => describeError(e, depth + 1)).join(', ')
      : error.message || error.name;
  if (error.cause === undefined || depth >= 4) return own;
  return `${own}: ${describeError(error.cause, depth + 1)}`;
}
