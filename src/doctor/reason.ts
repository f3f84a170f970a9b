import { describeError } from '../errors.ts';

/** The real cause under a failed fetch: `fetch failed: connect ECONNREFUSED 127.0.0.1:5556`. */
export function reason(error: unknown): string {
  const e = error as { name?: string };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timed out';
  return describeError(error);
}
