/**
 * The path as the policy sees it. Upstreams decode percent-escapes and resolve dot segments, so a
 * rule written for `/admin` must also catch `/%61dmin`, `//admin` and `/public/..%2Fadmin`:
 * escapes are decoded, repeated slashes collapsed, and a path that still holds `.` or `..`
 * segments (browsers never send one; Traefik v3 removes them) is refused rather than guessed at.
 *
 * Returns undefined for a path the policy cannot judge (bad escapes, control characters, dot
 * segments); callers answer 400.
 */
export function canonicalPath(path: string): string | undefined {
  let decoded = path;
  if (path.includes('%')) {
    try {
      decoded = decodeURIComponent(path);
    } catch {
      return undefined;
    }
  }
  if (!decoded.startsWith('/')) return undefined;
  if (/[\u0000-\u001f\u007f]/.test(decoded)) return undefined;
  const collapsed = decoded.includes('//') ? decoded.replace(/\/{2,}/g, '/') : decoded;
  if (collapsed.includes('/.')) {
    for (const segment of collapsed.split('/')) {
      if (segment === '.' || segment === '..') return undefined;
    }
  }
  return collapsed;
}
