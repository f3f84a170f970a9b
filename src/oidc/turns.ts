/**
 * At most `limit` calls at once; the others wait their turn, first come first served (issue 15:
 * a refresh storm). When thousands of ID tokens expire together — Dex back after an outage, a
 * release that shortened their lifetime — every replica would otherwise send every refresh grant
 * at once: the provider answers them one after the other, the last ones run into the per-call
 * timeout although the provider did grant them, and their retries present a refresh token the
 * provider already rotated (extra grants at best, a revoked grant and a signed-out user at worst).
 * Waiting here costs no timeout: the per-call timeout starts when the call does. A caller that
 * can do without the call (a session whose token is still valid) bounds its wait: a provider that
 * hangs must not hold such requests longer than a call would.
 */
export class Turns {
  readonly #limit: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  /** Calls running now and calls waiting for their turn (metrics, tests). */
  get load(): { readonly running: number; readonly waiting: number } {
    return { running: this.#running, waiting: this.#waiting.length };
  }

  /** Runs `call` in its turn; throws `waitedTooLong()` when no turn came within `maxWaitMs`. */
  async run<T>(
    call: () => Promise<T>,
    maxWaitMs = Number.POSITIVE_INFINITY,
    waitedTooLong: () => Error = () => new Error('no turn'),
  ): Promise<T> {
    if (this.#running >= this.#limit) await this.#turn(maxWaitMs, waitedTooLong);
    else this.#running++;
    try {
      return await call();
    } finally {
      const next = this.#waiting.shift();
      // The finished call's slot goes to the next in line as it is (running stays the same).
      if (next) next();
      else this.#running--;
    }
  }

  /** Waits for a slot handed over by a finished call; gives up (throws) after `maxWaitMs`. */
  #turn(maxWaitMs: number, waitedTooLong: () => Error): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const take = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = Number.isFinite(maxWaitMs)
        ? setTimeout(() => {
            const at = this.#waiting.indexOf(take);
            if (at !== -1) this.#waiting.splice(at, 1);
            reject(waitedTooLong());
          }, maxWaitMs)
        : undefined;
      this.#waiting.push(take);
    });
  }
}
