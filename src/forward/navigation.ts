import type { IncomingHttpHeaders } from 'node:http';

/**
 * A top-level browser navigation — the only kind of request that may start a login (DESIGN §4.5).
 * Everything else (XHR, fetch, images, favicons, non-GET) gets 401, so sub-resources never start
 * logins that race each other.
 */
export function isNavigation(method: string, headers: IncomingHttpHeaders): boolean {
  if (method !== 'GET' && method !== 'HEAD') return false;
  if (headers['x-requested-with'] !== undefined) return false;
  if (isWebSocketUpgrade(headers)) return false;
  const mode = headers['sec-fetch-mode'];
  if (mode !== undefined && mode !== 'navigate') return false;
  const dest = headers['sec-fetch-dest'];
  if (dest !== undefined && dest !== 'document') return false;
  const accept = headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

/**
 * A WebSocket handshake (Dashboard and Headlamp exec, logs), decided like an API call: 401, never
 * a login. Each proxy shows it differently — Traefik strips Upgrade and Connection from the check
 * but says `X-Forwarded-Proto: ws`/`wss`; nginx's auth_request drops them too; Caddy passes them —
 * while the handshake's own Sec-WebSocket-Key/-Version (end-to-end headers) and a browser's
 * `Sec-Fetch-Mode: websocket` reach the check through all of them.
 */
export function isWebSocketUpgrade(headers: IncomingHttpHeaders): boolean {
  if (headers['sec-websocket-key'] !== undefined || headers['sec-websocket-version'] !== undefined)
    return true;
  if (headers['sec-fetch-mode'] === 'websocket') return true;
  const upgrade = headers.upgrade;
  if (typeof upgrade === 'string' && /(^|,)\s*websocket\s*(,|$)/i.test(upgrade)) return true;
  const proto = headers['x-forwarded-proto'];
  const first = (Array.isArray(proto) ? proto[0] : proto)?.split(',')[0]?.trim().toLowerCase();
  return first === 'ws' || first === 'wss';
}

/** Whether an error answer should be an HTML page rather than JSON. */
export function wantsHtml(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}
