import type { ProviderOperation, ProviderResult } from '../metrics.ts';
import { boundedResponse } from './limits.ts';
import type { ProviderCall } from './types.ts';

/**
 * Every HTTP round trip to the provider goes through one fetch that times it, tells the metrics,
 * and remembers the last result (what /readyz reports: the last call, not a stale "ready").
 */

export type Observe = (operation: ProviderOperation, seconds: number, result: ProviderResult) => void;

const resultOf = (status: number): ProviderResult =>
  status >= 500 ? 'error' : status >= 400 ? 'refused' : 'ok';

function operationOf(url: string, init: RequestInit | undefined): ProviderOperation {
  const grant = init?.body instanceof URLSearchParams ? init.body.get('grant_type') : null;
  if (grant === 'refresh_token') return 'refresh';
  if (grant === 'authorization_code') return 'code';
  if (url.includes('/.well-known/openid-configuration')) return 'discovery';
  return 'other';
}

export class Transport {
  #last: ProviderCall | undefined;
  readonly #observe: Observe | undefined;
  readonly #now: () => number;

  constructor(observe: Observe | undefined, now: () => number) {
    this.#observe = observe;
    this.#now = now;
  }

  get last(): ProviderCall | undefined {
    return this.#last;
  }

  /** A fetch for openid-client and jose; `fixed` names the operation (jwks) when the URL does not tell. */
  fetch(fixed?: ProviderOperation) {
    return async (url: string | URL, init?: RequestInit): Promise<Response> => {
      const operation = fixed ?? operationOf(String(url), init);
      const started = performance.now();
      try {
        const response = await fetch(url, init);
        this.#record(operation, (performance.now() - started) / 1000, resultOf(response.status));
        return await boundedResponse(response);
      } catch (error) {
        this.#record(operation, (performance.now() - started) / 1000, 'error');
        throw error;
      }
    };
  }

  #record(operation: ProviderOperation, seconds: number, result: ProviderResult): void {
    this.#last = { operation, result, at: this.#now() };
    this.#observe?.(operation, seconds, result);
  }
}
