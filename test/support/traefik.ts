/**
 * Traefik ForwardAuth emulator for tests.
 *
 * Real Traefik cannot be installed here, so this module reproduces the behaviour described in
 * /work/shared/spec/traefik-forwardauth.md ("spec"), cross-checked against the Traefik sources it cites
 * (`forward.go`, `forwarded_header.go`, `response_modifier.go`, `strip_prefix.go`, the entry point's path
 * handling and `pkg/proxy/httputil`). Profiles:
 *   - 'v3' (default): Traefik v3.6.24 / v3.7.9.
 *   - 'v2': Traefik v2.11.53 (the last v2.11 release in the snapshot, which also has the tri-state
 *     `trustForwardHeader`). Note: the spec says path sanitising/normalising is v3-only, but the v2.11 line got
 *     both backported (sanitizePath in v2.11.23, normalizePath in v2.11.25), so this profile applies them too.
 *
 * Pipeline for every request (spec §1):
 *   Go server parsing → entry point (path normalise/sanitise, forwarded headers) → router → stripPrefix →
 *   forwardAuth → reverse proxy to the service (Go's httputil.ReverseProxy as configured by Traefik).
 *
 * Go semantics that matter are emulated rather than approximated with Node's defaults: header maps keyed by
 * Go-canonical names with every value kept (built from `rawHeaders`), Go's URL parsing/escaping (for
 * X-Forwarded-Uri and Location), Go's Set-Cookie parser and serialiser, Go's client artefacts (User-Agent,
 * Accept-Encoding: gzip with transparent gunzip, no Connection header).
 *
 * Not modelled:
 *   - `forwardBody` / `maxBodySize` (spec §3.6): the auth request never carries a body;
 *   - TLS (entry point or `https://` auth/service addresses), HTTP/2, CONNECT, trailers (WebSocket
 *     upgrades are: traefik/upgrade.ts);
 *   - `headerField` (access log only), tracing, `tls.*` options, `HTTP_PROXY` environment variables;
 *   - mode "T-old" (`trustForwardHeader: true` before v3.6.14 / v2.11.43) and other older-version behaviour;
 *   - raw non-ASCII bytes in the request target (Node's HTTP parser rejects them before the emulator sees them);
 *   - several Cookie header lines to the auth server/upstream are joined with "; " by Node's client, where Go
 *     sends separate lines (a Node server sees the same `req.headers.cookie` either way).
 * Only loopback hosts are ever dialled; any other host in an address is treated as unreachable.
 */
export type { ForwardAuthOptions, Route, Traefik, TraefikOptions } from './traefik/config.ts';
export { parseRule } from './traefik/routing.ts';
export { startTraefik } from './traefik/server.ts';
