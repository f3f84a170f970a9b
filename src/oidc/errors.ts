import { errors as joseErrors } from 'jose';
import * as client from 'openid-client';
import { AppError, describeError } from '../errors.ts';
import { tooLargeIn } from './limits.ts';

/**
 * The one place where openid-client's and jose's errors become ours (STYLE: translate a lower
 * library's errors at its border): AppError for the routes, RefreshError for the sessions.
 */

/** How a refresh failed: terminal ends the session; transient keeps it and retries later. */
export class RefreshError extends Error {
  readonly kind: 'terminal' | 'transient';
  readonly status: number | undefined;
  readonly oauthError: string | undefined;
  constructor(kind: 'terminal' | 'transient', message: string, status?: number, oauthError?: string) {
    super(message);
    this.name = 'RefreshError';
    this.kind = kind;
    this.status = status;
    this.oauthError = oauthError;
  }
}

export interface HttpAnswer {
  readonly status: number;
  /** The OAuth `error` code of a JSON error body, when there was one. */
  readonly error: string | undefined;
}

/**
 * The HTTP answer behind a failed token-endpoint call, whatever shape openid-client gave it: a
 * JSON error body (ResponseBodyError), a WWW-Authenticate challenge, or a body that is not JSON
 * at all (an empty 400, an HTML error page: the Response is the cause). Undefined for network
 * errors and timeouts, which never got an answer.
 */
export function httpAnswerOf(error: unknown): HttpAnswer | undefined {
  if (error instanceof client.ResponseBodyError) return { status: error.status, error: error.error };
  if (error instanceof client.WWWAuthenticateChallengeError) {
    const challenge = error.cause?.[0]?.parameters as { error?: string } | undefined;
    return { status: error.status, error: challenge?.error };
  }
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  if (cause instanceof Response) return { status: cause.status, error: undefined };
  return undefined;
}

/** A 4xx is the provider's refusal, whatever its body; 408 and 429 only ask to come back later. */
export function isRefusal(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

/** Any 4xx is terminal (Dex answers most refusals with 400 invalid_request, spec A9; others send no body). */
export function classifyRefreshError(error: unknown): RefreshError {
  if (error instanceof RefreshError) return error;
  const tooLarge = tooLargeIn(error);
  if (tooLarge) return new RefreshError('terminal', `refresh answer unusable: ${tooLarge.detail}`);
  const answer = httpAnswerOf(error);
  if (answer) {
    const kind = isRefusal(answer.status) ? 'terminal' : 'transient';
    const what = answer.error
      ? `${answer.status} ${answer.error}`
      : `${answer.status} without an OAuth error`;
    return new RefreshError(kind, `token endpoint answered ${what}`, answer.status, answer.error);
  }
  return new RefreshError('transient', `token endpoint unreachable: ${describeError(error)}`);
}

export function providerUnavailable(detail: string, retryAfter = '5'): AppError {
  return new AppError(
    'provider_unavailable',
    'The identity provider cannot be reached right now. Please try again shortly.',
    { detail, headers: { 'Retry-After': retryAfter } },
  );
}

/** A failed code exchange: the provider's refusal, its failure, or no answer at all. */
export function translateCodeError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const tooLarge = tooLargeIn(error);
  if (tooLarge) return tooLarge;
  if (error instanceof client.AuthorizationResponseError) {
    return new AppError('provider_denied', 'The identity provider did not complete the sign-in.', {
      detail: `authorization response error: ${error.error}`,
    });
  }
  const answer = httpAnswerOf(error);
  if (answer && answer.status >= 500) {
    return new AppError('provider_error', 'The identity provider failed while finishing the sign-in.', {
      detail: `token endpoint ${answer.status} ${answer.error ?? ''}`.trim(),
    });
  }
  if (answer) {
    return new AppError(
      'login_state_invalid',
      'This sign-in link has expired or was already used. Please sign in again.',
      { detail: `token endpoint ${answer.status} ${answer.error ?? 'without an OAuth error'}` },
    );
  }
  if (error instanceof joseErrors.JOSEError) {
    return new AppError(
      'login_state_invalid',
      'The identity token could not be verified. Please sign in again.',
      { detail: `id token rejected: ${error.code}` },
    );
  }
  const e = error as { code?: string; message?: string; name?: string };
  if (e?.code?.startsWith?.('OAUTH_')) {
    return new AppError(
      'login_state_invalid',
      'The sign-in response could not be verified. Please sign in again.',
      { detail: `${e.code}: ${e.message}` },
    );
  }
  return providerUnavailable(`${e?.name ?? 'Error'}: ${describeError(error)}`);
}

export function invalidBearer(detail: string, description: string): AppError {
  return new AppError('unauthenticated', 'The bearer token is not valid.', {
    detail: `bearer token refused: ${detail}`,
    headers: {
      'WWW-Authenticate': `Bearer realm="dex-forward-auth", error="invalid_token", error_description="${description}"`,
    },
  });
}

function bearerDescription(error: InstanceType<typeof joseErrors.JOSEError>): string {
  if (error instanceof joseErrors.JWTExpired) return 'The token has expired.';
  if (error instanceof joseErrors.JWTClaimValidationFailed)
    return `The token's "${error.claim}" claim is not acceptable.`;
  if (error instanceof joseErrors.JOSEAlgNotAllowed)
    return 'The token is signed with an algorithm that is not allowed.';
  if (error instanceof joseErrors.JWKSNoMatchingKey) return "The token's signing key is unknown.";
  return 'The token could not be verified.';
}

/** jose's verdicts on a bearer token → 401; an unreachable JWKS → 503. */
export function translateBearerError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof joseErrors.JOSEError) {
    if (error instanceof joseErrors.JWKSTimeout || error.code === 'ERR_JWKS_INVALID') {
      return providerUnavailable(`jwks: ${error.code}`);
    }
    return invalidBearer(error.code, bearerDescription(error));
  }
  const e = error as { name?: string };
  return providerUnavailable(`jwks fetch: ${e?.name ?? 'Error'}: ${describeError(error)}`);
}

/** An ID token from a refresh that fails verification ends the session; an unreadable answer does not. */
export function translateRefreshedTokenError(error: unknown): RefreshError {
  if (error instanceof RefreshError) return error;
  const tooLarge = tooLargeIn(error);
  if (tooLarge) return new RefreshError('terminal', `refreshed id token unusable: ${tooLarge.detail}`);
  if (error instanceof joseErrors.JOSEError) {
    return new RefreshError('terminal', `refreshed id token rejected: ${error.code}`);
  }
  if (error instanceof AppError && error.code === 'claims_missing') {
    return new RefreshError('terminal', `refreshed id token unusable: ${error.detail ?? error.code}`);
  }
  return new RefreshError('transient', `refresh response unusable: ${describeError(error)}`);
}
