import { AppError } from '../errors.ts';

/**
 * The path the access policy judges: the path the upstream will serve, whatever server it is
 * (DESIGN §10). Upstreams disagree on `;`, `%2F`, dot segments and fragments, so every spelling
 * is either reduced to the strictest reading or refused:
 *
 * - `#` (raw or `%23`), `?` from `%3F`, and a backslash (raw or `%5C`) are refused: a fragment
 *   or query hidden in the path, or a Windows separator, would let the upstream serve another
 *   path than the one judged.
 * - Percent-escapes are decoded once (`/%61dmin` is `/admin`, `%2F` is `/`); what still looks
 *   like an escape after that (`%2561` → `%61`) is double encoding, refused, since a second
 *   decoder on the way would make it another path.
 * - `;` ends its segment, as Java servers read path parameters: `/admin;x/y` is `/admin/y`.
 * - Empty segments collapse (`//admin` is `/admin`); a `.` or `..` segment is refused (browsers
 *   never send one; Traefik v3 removes them; nginx and Caddy pass them on as they came).
 * - Case and trailing dots are kept: `/ADMIN` and `/admin.` are other paths than `/admin`.
 * - A Unicode spelling of a separator or dot (`／`, `．．`: NFKC) is refused.
 *
 * The result is escaped again where needed (`%` as `%25`), so that one more decoding — as the
 * policy does — yields exactly the judged path.
 */

/** Anything that can make a path mean something else; a path without these is returned as is. */
const NEEDS_WORK = /[%;#\\\u0080-\uffff]|\/\/|\/\.|^[^/]/;

function refuse(detail: string): never {
  throw new AppError('invalid_forwarded_request', 'The requested path is not accepted here.', { detail });
}

/**
 * Upstreams that normalise Unicode (NFKC: IIS, some Java and Python stacks) read a fullwidth
 * full stop `．` (U+FF0E) as `.`, a fullwidth solidus `／` (U+FF0F) as `/` and so on: refused
 * where the normalised path would have another separator, a dot segment, a backslash, `;`, `#`
 * or `?` than the path judged.
 */
function refuseUnicodeLookalikes(decoded: string): void {
  const normalised = decoded.normalize('NFKC');
  if (normalised === decoded) return;
  const count = (text: string, c: string) => text.split(c).length;
  const moved = ['/', '\\', '#', '?', ';', '%'].some((c) => count(normalised, c) !== count(decoded, c));
  if (moved || /(^|\/)\.\.?(\/|;|$)/.test(normalised)) {
    refuse('a Unicode spelling of a separator or dot segment in the path');
  }
}

export function judgedPath(rawPath: string): string {
  if (!NEEDS_WORK.test(rawPath)) return rawPath;
  if (!rawPath.startsWith('/')) refuse('path does not start with /');
  if (/[#\\]/.test(rawPath)) refuse('fragment or backslash in the path');
  let decoded = rawPath;
  if (rawPath.includes('%')) {
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      refuse('bad percent-escape in the path');
    }
    if (/[#?\\\u0000-\u001f\u007f]/.test(decoded)) refuse('encoded fragment, query, backslash or control');
    if (/%[0-9a-f]{2}/i.test(decoded)) refuse('double percent-encoding in the path');
  }
  if (/[^\u0000-\u007f]/.test(decoded)) refuseUnicodeLookalikes(decoded);
  const segments: string[] = [];
  const parts = decoded.split('/');
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i] as string;
    const semi = part.indexOf(';');
    const segment = semi === -1 ? part : part.slice(0, semi);
    if (segment === '.' || segment === '..') refuse('dot segment in the path');
    // Empty segments collapse; a trailing slash stays ("/admin/" is still under "/admin").
    if (segment !== '' || i === parts.length - 1) segments.push(segment);
  }
  const judged = `/${segments.join('/')}`.replace(/\/{2,}/g, '/');
  return judged.includes('%') ? judged.replaceAll('%', '%25') : judged;
}
