/**
 * Headers Traefik manages or strips: the X-Forwarded-* set of forwarded_header.go, and the
 * hop-by-hop lists of forward.go and httputil.ReverseProxy.
 */
import { canonicalHeaderKey, type GoHeader, trimOWS } from './goHeader.ts';

/** Traefik-managed X-headers (forwarded_header.go XHeadersSet at v3.7.9 / v3.6.24 / v2.11.53). */
export const MANAGED_X_HEADERS = [
  'X-Forwarded-Proto',
  'X-Forwarded-For',
  'X-Forwarded-Host',
  'X-Forwarded-Port',
  'X-Forwarded-Server',
  'X-Forwarded-Uri',
  'X-Forwarded-Method',
  'X-Forwarded-Prefix',
  'X-Forwarded-Tls-Client-Cert',
  'X-Forwarded-Tls-Client-Cert-Info',
  'X-Real-Ip',
];
export const MANAGED_X_HEADER_SET = new Set(MANAGED_X_HEADERS);

/** isManagedXHeader: canonical managed names and their underscore spellings such as `X_Forwarded_For`. */
export function isManagedXHeader(key: string): boolean {
  if (!key.startsWith('X')) return false;
  if (MANAGED_X_HEADER_SET.has(key)) return true;
  if (!key.includes('_')) return false;
  return MANAGED_X_HEADER_SET.has(canonicalHeaderKey(key.replaceAll('_', '-')));
}

/** DeleteXForwardedHeaders. */
export function deleteManagedXHeaders(header: GoHeader): void {
  for (const key of header.keys()) if (isManagedXHeader(key)) header.deleteKey(key);
}

/** forward.go hopHeaders (note the historical "Trailers" spelling). */
export const AUTH_HOP_HEADERS = [
  'Connection',
  'Keep-Alive',
  'Te',
  'Trailers',
  'Transfer-Encoding',
  'Upgrade',
];

/** connectionheader.go RemoveConnectionHeaders (the Connection/Upgrade pair it may keep is removed afterwards). */
export function removeConnectionListedHeaders(h: GoHeader): void {
  for (const value of h.values('Connection')) {
    for (const token of value.split(',')) {
      const name = trimOWS(token);
      if (name !== '') h.del(name);
    }
  }
}

/** httputil.ReverseProxy hopHeaders. */
export const PROXY_HOP_HEADERS = [
  'Connection',
  'Proxy-Connection',
  'Keep-Alive',
  'Proxy-Authenticate',
  'Proxy-Authorization',
  'Te',
  'Trailer',
  'Transfer-Encoding',
  'Upgrade',
];

export function removeProxyHopHeaders(h: GoHeader): void {
  removeConnectionListedHeaders(h);
  for (const name of PROXY_HOP_HEADERS) h.del(name);
}
