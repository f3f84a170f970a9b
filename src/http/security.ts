import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet from 'helmet';

/**
 * helmet's headers for HTML pages, computed once. The forward-auth fast path does not run through
 * Express, so the same header set is captured here and applied to every page either path sends.
 */
export function helmetHeaders(contentSecurityPolicy: string): Readonly<Record<string, string>> {
  const captured: Record<string, string> = {};
  const res = {
    setHeader(name: string, value: string | number | readonly string[]) {
      captured[name] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader(name: string) {
      delete captured[name];
    },
    getHeader(name: string) {
      return captured[name];
    },
  } as unknown as ServerResponse;
  const req = { headers: {} } as IncomingMessage;
  helmet({ contentSecurityPolicy: false, strictTransportSecurity: false })(req, res, () => undefined);
  captured['Content-Security-Policy'] = contentSecurityPolicy;
  return Object.freeze(captured);
}
