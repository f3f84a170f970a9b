import { readFile } from 'node:fs/promises';
import type { Logger } from '../log.ts';

/**
 * The pod's service-account token for impersonation mode (UPSTREAM_AUTH=impersonate). Kubernetes
 * rotates projected tokens (the kubelet rewrites the file well before expiry), so the file is
 * re-read every minute in the background; the hot path only reads the cached value.
 */
export class ServiceAccountToken {
  readonly #path: string;
  readonly #log: Logger;
  #token: string;
  #timer: NodeJS.Timeout;

  /** `initial` is the file's content as read at start-up (config validation read it already). */
  constructor(path: string, initial: string, log: Logger, refreshMs = 60_000) {
    this.#path = path;
    this.#log = log;
    this.#token = initial.trim();
    this.#timer = setInterval(() => void this.refresh(), refreshMs);
    this.#timer.unref();
  }

  get current(): string {
    return this.#token;
  }

  async refresh(): Promise<void> {
    try {
      const next = (await readFile(this.#path, 'utf8')).trim();
      if (next !== '' && next !== this.#token) {
        this.#token = next;
        this.#log.info({ path: this.#path }, 'service-account token re-read');
      }
    } catch (error) {
      this.#log.warn(
        { path: this.#path, code: (error as NodeJS.ErrnoException).code },
        'cannot re-read the service-account token; keeping the previous one',
      );
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
