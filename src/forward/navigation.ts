import type { IncomingHttpHeaders } from 'node:http';

/**
 * A top-level browser navigation — the only kind of request that may start a login (DESIGN §4.5).
 * Everything else (XHR, fetch, images, favicons, non-GET) gets 401, so sub-resources never start
 * logins that race each other.
 */
export function isNavigation(method: string, headers: IncomingHttpHeaders): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  if (headers['x-requested-with'] !== undefined) return false;
  const mode = headers['sec-fetch-mode'];
  if (mode !== undefined && mode !== 'navigate') return false;
  const dest = headers['sec-fetch-dest'];
  if (dest !== undefined && dest !== 'document') return false;
  const accept = headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

/** Whether an error answer should be an HTML page rather than JSON. */
export function wantsHtml(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}
