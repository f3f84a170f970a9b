import type { IncomingMessage } from 'node:http';
import { AppError } from '../errors.ts';
import {
  badForwarded,
  type ForwardedParts,
  firstValue,
  type OriginalRequest,
  originalRequest,
  wholeValue,
  xForwardedParts,
} from './original.ts';
import type { ProxyTrust } from './trust.ts';

/**
 * The decision endpoints answer only forward-auth subrequests of a trusted proxy (DESIGN §2,
 * §10), and read the original request from the headers that proxy itself writes — never from
 * headers a client may have slipped through it:
 *
 * - `forward-auth` (`/auth`: Traefik ForwardAuth, Caddy forward_auth): `X-Forwarded-Method`,
 *   `-Proto`, `-Host`, `-Uri`. Both proxies always write them; `X-Original-*` are never read
 *   here (Traefik and Caddy pass a client's copies through).
 * - `auth-request` (`/oauth2/auth`: nginx auth_request, ingress-nginx auth-url): nginx writes
 *   only what its configuration says and passes every other header of the client, so the family
 *   is recognised by its marker: `X-Original-URL` (ingress-nginx, the shipped nginx config) or
 *   `X-Original-URI` (nginx's documented idiom; host from `Host`), with `X-Original-Method`; or
 *   `X-Forwarded-Uri` with the rest of its family (older nginx configurations, Caddy). Markers of
 *   both families at once mean one of them is a client's: refused.
 *
 * A request without a marker, or from a peer outside TRUSTED_PROXIES, is not a subrequest: 400,
 * and never any upstream header.
 *
 * With `refuseImpersonation` (UPSTREAM_AUTH=impersonate) a subrequest carrying an `Impersonate-*`
 * header of the client is refused too: nginx cannot strip `Impersonate-Extra-*` by pattern, but it
 * passes them to us, so here they are stopped before the service-account token is handed out.
 */
export type SubrequestKind = 'forward-auth' | 'auth-request';

export interface SubrequestPolicy {
  readonly kind: SubrequestKind;
  readonly refuseImpersonation: boolean;
}

function notSubrequest(detail: string): never {
  throw new AppError(
    'not_a_forward_auth_request',
    'This address answers forward-auth checks of the proxy only, not browsers or scripts.',
    { detail },
  );
}

/** `https://host[:port]/path?query` as ingress-nginx writes `$scheme://$http_host$request_uri`. */
const ORIGINAL_URL_RE = /^(https?):\/\/([^/?#@\s]+)(\/[\x21-\x7e]*)$/i;

function xOriginalParts(req: IncomingMessage): ForwardedParts {
  const h = req.headers;
  const method = firstValue(h['x-original-method']);
  const url = wholeValue(h['x-original-url']);
  const uri = wholeValue(h['x-original-uri']);
  if (url === undefined) return { method, proto: undefined, host: h.host, uri };
  const m = ORIGINAL_URL_RE.exec(url);
  if (!m) return badForwarded('bad X-Original-URL');
  // ingress-nginx with auth-method also sends X-Original-URI: it must name the same request.
  if (uri !== undefined && uri !== m[3]) return badForwarded('X-Original-URI and X-Original-URL disagree');
  return { method, proto: m[1], host: m[2], uri: m[3] };
}

export function readSubrequest(
  req: IncomingMessage,
  trust: ProxyTrust,
  policy: SubrequestPolicy,
): OriginalRequest {
  if (!trust.isTrusted(req.socket.remoteAddress)) {
    notSubrequest('the peer is not in TRUSTED_PROXIES, so its forwarded headers are not believed');
  }
  const h = req.headers;
  if (policy.refuseImpersonation && Object.keys(h).some((name) => name.startsWith('impersonate-'))) {
    throw new AppError('bad_request', 'Impersonation headers are not accepted here.', {
      detail: 'a client-sent Impersonate-* header reached the decision',
    });
  }
  const kind = policy.kind;
  const forwardedMarker = h['x-forwarded-uri'] !== undefined;
  const originalMarker = h['x-original-url'] !== undefined || h['x-original-uri'] !== undefined;
  if (kind === 'forward-auth' || !originalMarker) {
    if (!forwardedMarker) notSubrequest('no X-Forwarded-Uri (nor, on /oauth2/auth, X-Original-URL/-URI)');
    return originalRequest(req, trust, xForwardedParts(req), true);
  }
  if (forwardedMarker) badForwarded('both X-Forwarded-Uri and X-Original-URL/-URI: one is a client header');
  return originalRequest(req, trust, xOriginalParts(req), true);
}
