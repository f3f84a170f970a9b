import type { Environment } from '@marcbachmann/cel-js';
import { RE2JS } from 're2js';
import { FOREVER, sharedMemo } from '../memory/shared.ts';

/**
 * The Kubernetes CEL functions that the API server's JWT authenticator environment registers
 * (k8s.io/apiserver pkg/cel/environment base.go: the Kubernetes lists and regex libraries,
 * cel-go's strings v2, sets and lists v3 extensions) and that the CEL library does not already
 * have. Each follows the cel-go/Kubernetes definition; errors are thrown as CEL evaluation errors.
 *
 * Not provided (an expression using one fails to compile, naming the rule): `url()` and its
 * accessors, `ip()`/`cidr()`, `quantity()`, `semver()`, `format.*`, `strings.quote`, `format()`,
 * `sortBy`, two-variable comprehensions. See UNSUPPORTED_FUNCTIONS.
 */

/** Functions the API server has that dex-forward-auth does not (for a clear compile error). */
export const UNSUPPORTED_FUNCTIONS: ReadonlySet<string> = new Set([
  'url',
  'isURL',
  'getScheme',
  'getHost',
  'getHostname',
  'getPort',
  'getEscapedPath',
  'getQuery',
  'ip',
  'isIP',
  'cidr',
  'isCIDR',
  'quantity',
  'isQuantity',
  'semver',
  'isSemver',
  'format',
  'quote',
  'sortBy',
  'transformList',
  'transformMap',
  'transformMapEntry',
  'first',
  'last',
]);

/** Functions the CEL library has that the API server's environment has not: refused at compile time. */
export const FOREIGN_FUNCTIONS: ReadonlySet<string> = new Set(['json', 'hex', 'base64', 'at', 'bind']);

class SetsNamespace {}
class ListsNamespace {}

const fail = (message: string): never => {
  throw new Error(message);
};

type Scalar = string | number | bigint | boolean;

function compare(a: unknown, b: unknown): number {
  if (typeof a === typeof b && (typeof a === 'string' || typeof a === 'bigint' || typeof a === 'number')) {
    return (a as Scalar) < (b as Scalar) ? -1 : (a as Scalar) > (b as Scalar) ? 1 : 0;
  }
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  return fail('no such overload: the list elements are not comparable');
}

function celEquals(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'bigint') return a === Number(b);
  if (typeof a === 'bigint' && typeof b === 'number') return Number(a) === b;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => celEquals(x, b[i]));
  }
  return a === b;
}

const contains = (list: readonly unknown[], value: unknown) => list.some((x) => celEquals(x, value));

/** Code points, as CEL strings index them. */
const codePoints = (s: string) => [...s];

/**
 * The CEL library's own lowerAscii, upperAscii and trim differ from cel-go's for non-ASCII
 * letters and some Unicode spaces ('Ä'.lowerAscii() must stay 'Ä'); compileCel renames calls to
 * them to these, which follow cel-go exactly.
 */
export const RENAMED_FUNCTIONS: Readonly<Record<string, string>> = {
  lowerAscii: 'kubernetesLowerAscii',
  upperAscii: 'kubernetesUpperAscii',
  trim: 'kubernetesTrim',
  // RE2 syntax, as cel-go's: `(?i)…` is valid there and an error in JavaScript's RegExp.
  matches: 'kubernetesMatches',
};

/** Go's unicode.IsSpace, which cel-go's trim() uses. */
const GO_SPACE = '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const TRIM = new RegExp(`^${GO_SPACE}+|${GO_SPACE}+$`, 'gu');

function registerStrings(env: Environment): void {
  env.registerFunction('string.kubernetesLowerAscii(): string', (s: string) =>
    s.replace(/[A-Z]/g, (c) => c.toLowerCase()),
  );
  env.registerFunction('string.kubernetesUpperAscii(): string', (s: string) =>
    s.replace(/[a-z]/g, (c) => c.toUpperCase()),
  );
  env.registerFunction('string.kubernetesTrim(): string', (s: string) => s.replace(TRIM, ''));
  env.registerFunction('string.charAt(int): string', (s: string, i: bigint) => {
    const chars = codePoints(s);
    if (i < 0n || i > BigInt(chars.length)) fail(`index out of range: ${i}`);
    return chars[Number(i)] ?? '';
  });
  env.registerFunction('string.replace(string, string): string', (s: string, from: string, to: string) =>
    s.split(from).join(to),
  );
  env.registerFunction(
    'string.replace(string, string, int): string',
    (s: string, from: string, to: string, n: bigint) => {
      if (n < 0n) return s.split(from).join(to);
      const parts = s.split(from);
      const count = Math.min(Number(n), parts.length - 1);
      const head = parts.slice(0, count + 1).join(to);
      return count + 1 < parts.length ? `${head}${from}${parts.slice(count + 1).join(from)}` : head;
    },
  );
}

function registerKubernetesLists(env: Environment): void {
  env.registerFunction('list<dyn>.isSorted(): bool', (l: unknown[]) =>
    l.every((x, i) => i === 0 || compare(l[i - 1], x) <= 0),
  );
  env.registerFunction('list<dyn>.sum(): dyn', (l: unknown[]) => {
    if (l.length === 0) return 0n;
    return l.reduce((a, b) => {
      if (typeof a !== typeof b || (typeof a !== 'bigint' && typeof a !== 'number')) {
        fail('no such overload: sum() needs a list of numbers of one type');
      }
      return (a as number) + (b as number);
    });
  });
  env.registerFunction('list<dyn>.min(): dyn', (l: unknown[]) =>
    l.length === 0 ? fail('min called on empty list') : l.reduce((a, b) => (compare(b, a) < 0 ? b : a)),
  );
  env.registerFunction('list<dyn>.max(): dyn', (l: unknown[]) =>
    l.length === 0 ? fail('max called on empty list') : l.reduce((a, b) => (compare(b, a) > 0 ? b : a)),
  );
  env.registerFunction('list<dyn>.indexOf(dyn): int', (l: unknown[], v: unknown) =>
    BigInt(l.findIndex((x) => celEquals(x, v))),
  );
  env.registerFunction('list<dyn>.lastIndexOf(dyn): int', (l: unknown[], v: unknown) =>
    BigInt(l.findLastIndex((x) => celEquals(x, v))),
  );
}

function flatten(l: readonly unknown[], depth: number): unknown[] {
  const out: unknown[] = [];
  for (const x of l) {
    if (Array.isArray(x) && depth > 0) out.push(...flatten(x, depth - 1));
    else out.push(x);
  }
  return out;
}

/** cel-go's ext.Lists (version 3, as the API server registers it), without sortBy. */
function registerExtLists(env: Environment): void {
  env.registerType('kubernetes.ListsNamespace', ListsNamespace);
  env.registerConstant('lists', 'kubernetes.ListsNamespace', new ListsNamespace());
  env.registerFunction('kubernetes.ListsNamespace.range(int): list<int>', (_ns: unknown, n: bigint) => {
    if (n > 100_000n) fail('lists.range: the list would be too long');
    return Array.from({ length: Math.max(0, Number(n)) }, (_, i) => BigInt(i));
  });
  env.registerFunction('list<dyn>.flatten(): list<dyn>', (l: unknown[]) => flatten(l, 1));
  env.registerFunction('list<dyn>.flatten(int): list<dyn>', (l: unknown[], depth: bigint) =>
    depth < 0n ? fail('level must be non-negative') : flatten(l, Number(depth)),
  );
  env.registerFunction('list<dyn>.slice(int, int): list<dyn>', (l: unknown[], from: bigint, to: bigint) => {
    if (from < 0n || to < 0n) fail(`cannot slice(${from}, ${to}), negative indexes not supported`);
    if (from > to) fail(`cannot slice(${from}, ${to}), start index must be less than or equal to end index`);
    if (to > BigInt(l.length)) fail(`cannot slice(${from}, ${to}), list is length ${l.length}`);
    return l.slice(Number(from), Number(to));
  });
  env.registerFunction('list<dyn>.distinct(): list<dyn>', (l: unknown[]) =>
    l.filter((x, i) => l.findIndex((y) => celEquals(x, y)) === i),
  );
  env.registerFunction('list<dyn>.reverse(): list<dyn>', (l: unknown[]) => [...l].reverse());
  env.registerFunction('list<dyn>.sort(): list<dyn>', (l: unknown[]) => [...l].sort(compare));
}

/** cel-go's ext.Sets. */
function registerSets(env: Environment): void {
  env.registerType('kubernetes.SetsNamespace', SetsNamespace);
  env.registerConstant('sets', 'kubernetes.SetsNamespace', new SetsNamespace());
  env.registerFunction(
    'kubernetes.SetsNamespace.contains(list<dyn>, list<dyn>): bool',
    (_ns: unknown, a: unknown[], b: unknown[]) => b.every((x) => contains(a, x)),
  );
  env.registerFunction(
    'kubernetes.SetsNamespace.equivalent(list<dyn>, list<dyn>): bool',
    (_ns: unknown, a: unknown[], b: unknown[]) =>
      b.every((x) => contains(a, x)) && a.every((x) => contains(b, x)),
  );
  env.registerFunction(
    'kubernetes.SetsNamespace.intersects(list<dyn>, list<dyn>): bool',
    (_ns: unknown, a: unknown[], b: unknown[]) => b.some((x) => contains(a, x)),
  );
}

const regexCache = sharedMemo<RE2JS>('cel-regex', { share: 0.02, sizeOf: () => 2048 });

/** A compiled RE2 pattern (re2js: RE2 syntax, linear time), a bounded cache of recent ones. */
function re2(pattern: string): RE2JS {
  const hit = regexCache.peek(pattern, 0);
  if (hit) return hit;
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(pattern);
  } catch (error) {
    return fail(`invalid regular expression: ${(error as Error).message}`);
  }
  regexCache.set(pattern, compiled, FOREVER);
  return compiled;
}

function findAll(s: string, pattern: string, limit: number): string[] {
  const out: string[] = [];
  const matcher = re2(pattern).matcher(s);
  while ((limit < 0 || out.length < limit) && matcher.find()) out.push(matcher.group() ?? '');
  return out;
}

/** CEL's matches() and the Kubernetes regex library (find, findAll), with RE2 semantics. */
function registerRegex(env: Environment): void {
  env.registerFunction('string.kubernetesMatches(string): bool', (s: string, p: string) =>
    re2(p).matcher(s).find(),
  );
  env.registerFunction('kubernetesMatches(string, string): bool', (s: string, p: string) =>
    re2(p).matcher(s).find(),
  );
  env.registerFunction('string.find(string): string', (s: string, p: string) => {
    const matcher = re2(p).matcher(s);
    return matcher.find() ? (matcher.group() ?? '') : '';
  });
  env.registerFunction('string.findAll(string): list<string>', (s: string, p: string) => findAll(s, p, -1));
  env.registerFunction('string.findAll(string, int): list<string>', (s: string, p: string, n: bigint) =>
    findAll(s, p, n < 0n ? -1 : Number(n)),
  );
}

/** Registers every function above on a base environment (before it is cloned). */
export function registerKubernetesLibrary(env: Environment): void {
  registerStrings(env);
  registerKubernetesLists(env);
  registerExtLists(env);
  registerSets(env);
  registerRegex(env);
}
