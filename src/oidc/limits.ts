import { AppError } from '../errors.ts';

/**
 * Bounds on what the identity provider sends (its data is hostile, DESIGN §10): a sign-in answer,
 * an ID token, one claim. A token past them would be stored, decrypted by every replica asked
 * about the cookie and sent upstream on every request (where proxies refuse headers of a few
 * tens of KB anyway): the login ends with a page that says so, and a refresh ends the session.
 */

/** Any one answer of the provider (token, discovery, JWKS), read no further than this. */
export const PROVIDER_RESPONSE_MAX_BYTES = 1024 * 1024;
/** An ID token (compact JWS). */
export const ID_TOKEN_MAX_BYTES = 256 * 1024;
/** One claim's value, as JSON. */
export const CLAIM_MAX_BYTES = 64 * 1024;

const kib = (n: number) => `${Math.ceil(n / 1024)} KiB`;

export class TokenTooLarge extends AppError {
  constructor(detail: string) {
    super(
      'provider_error',
      "The identity provider's answer for you is too large to use. This usually means membership in very many groups: ask your platform team to have the provider send fewer (for example, only the groups this cluster uses).",
      { detail },
    );
    this.name = 'TokenTooLarge';
  }
}

/** Whether a TokenTooLarge is the error or one of its causes (openid-client wraps fetch's errors). */
export function tooLargeIn(error: unknown): TokenTooLarge | undefined {
  let e: unknown = error;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++) {
    if (e instanceof TokenTooLarge) return e;
    e = e.cause;
  }
  return undefined;
}

export function checkIdTokenSize(idToken: string): void {
  if (idToken.length > ID_TOKEN_MAX_BYTES) {
    throw new TokenTooLarge(`id token of ${kib(idToken.length)}, over ${kib(ID_TOKEN_MAX_BYTES)}`);
  }
}

/** Throws when one claim's value is over CLAIM_MAX_BYTES (names the claim, never its value). */
export function checkClaimSizes(claims: Readonly<Record<string, unknown>>): void {
  for (const [name, value] of Object.entries(claims)) {
    const size = typeof value === 'string' ? value.length : JSON.stringify(value ?? null).length;
    if (size > CLAIM_MAX_BYTES) {
      throw new TokenTooLarge(`claim "${name.slice(0, 64)}" of ${kib(size)}, over ${kib(CLAIM_MAX_BYTES)}`);
    }
  }
}

/** The body of a provider answer, refused past PROVIDER_RESPONSE_MAX_BYTES without reading it all. */
export async function boundedResponse(response: Response): Promise<Response> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  const over = () =>
    new TokenTooLarge(
      `provider answer over ${kib(PROVIDER_RESPONSE_MAX_BYTES)} (${response.url || 'unknown url'})`,
    );
  if (declared > PROVIDER_RESPONSE_MAX_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    throw over();
  }
  if (!response.body || [101, 204, 205, 304].includes(response.status)) return response;
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > PROVIDER_RESPONSE_MAX_BYTES) {
      await reader.cancel().catch(() => undefined);
      throw over();
    }
    chunks.push(value);
  }
  return new Response(Buffer.concat(chunks), {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}
