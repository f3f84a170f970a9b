import { type ASTNode, Environment } from '@marcbachmann/cel-js';
import {
  FOREIGN_FUNCTIONS,
  RENAMED_FUNCTIONS,
  registerKubernetesLibrary,
  UNSUPPORTED_FUNCTIONS,
} from './celLibrary.ts';

/**
 * The CEL environment of the API server's JWT authenticator (k8s.io/apiserver
 * pkg/authentication/cel): `claims` (map of claim name to any JSON value) for claim validation
 * rules and claim mappings, `user` (kubernetes.UserInfo: username, uid, groups, extra) for user
 * validation rules. Optional types (`claims.?x.orValue(y)`), homogeneous aggregate literals and
 * cross-type numeric comparisons are on, as in the Kubernetes base environment.
 *
 * The only importer of @marcbachmann/cel-js. Claims are JSON: numbers are CEL doubles, as the API
 * server's encoding/json makes them. `claims.a__dot__b` reads the claim "a.b" (also `__dash__`,
 * `__slash__`, `__underscores__` and `__<keyword>__`), at every depth.
 *
 * Cost: the API server stops an evaluation at a cost of 1,000,000 (PerCallLimit). Our equivalent
 * bound counts one unit per value read from the claims or the user (so every element a
 * comprehension visits, at every nesting level, counts) and stops at the same 1,000,000; the
 * expression itself is bounded by MAX_AST_NODES.
 */

export const PER_CALL_COST_LIMIT = 1_000_000;
export const MAX_AST_NODES = 10_000;

export type CelVariable = 'claims' | 'user';

/** A compiled expression: evaluate with `run`, which throws CelEvaluationError. */
export interface CelProgram {
  readonly expression: string;
  readonly ast: ASTNode;
  run(input: unknown): unknown;
}

export class CelCompileError extends Error {
  override readonly name = 'CelCompileError';
}
export class CelEvaluationError extends Error {
  override readonly name = 'CelEvaluationError';
}

function buildEnvironments(): Record<CelVariable, Environment> {
  const base = new Environment({
    enableOptionalTypes: true,
    homogeneousAggregateLiterals: true,
    limits: { maxAstNodes: MAX_AST_NODES, maxDepth: 250, maxListElements: 10_000, maxMapEntries: 10_000 },
  });
  registerKubernetesLibrary(base);
  return {
    claims: base.clone().registerVariable('claims', 'map<string, dyn>'),
    user: base.clone().registerVariable({
      name: 'user',
      schema: {
        username: 'string',
        uid: 'string',
        groups: 'list<string>',
        extra: 'map<string, list<string>>',
      },
    }),
  };
}

let environments: Record<CelVariable, Environment> | undefined;

/** Names of every function an AST calls (receiver-style or global). */
export function calledFunctions(node: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(node)) {
    for (const child of node) calledFunctions(child, out);
  } else if (node !== null && typeof node === 'object' && 'op' in node) {
    const { op, args } = node as { op: string; args: unknown };
    if ((op === 'call' || op === 'rcall') && Array.isArray(args) && typeof args[0] === 'string') {
      out.add(args[0]);
    }
    calledFunctions(args, out);
  }
  return out;
}

/** Points calls of RENAMED_FUNCTIONS at the cel-go-exact versions (before type-checking). */
function renameCalls(node: unknown): void {
  if (Array.isArray(node)) {
    for (const child of node) renameCalls(child);
  } else if (node !== null && typeof node === 'object' && 'op' in node) {
    const { op, args } = node as { op: string; args: unknown };
    if ((op === 'rcall' || op === 'call') && Array.isArray(args) && typeof args[0] === 'string') {
      const renamed = RENAMED_FUNCTIONS[args[0]];
      if (renamed) args[0] = renamed;
    }
    renameCalls(args);
  }
}

function firstLine(error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0] as string;
}

/**
 * Parses and type-checks `expression` in the environment of `variable`. `mustBeBool`: the
 * checked type must be exactly bool (claim and user validation rules), as the API server
 * requires; otherwise any type (mappings are checked when evaluated).
 */
export function compileCel(expression: string, variable: CelVariable, mustBeBool: boolean): CelProgram {
  environments ??= buildEnvironments();
  const env = environments[variable];
  let parsed: ReturnType<Environment['parse']>;
  try {
    parsed = env.parse(expression);
  } catch (error) {
    throw new CelCompileError(`compilation failed: ${firstLine(error)}`);
  }
  const called = calledFunctions(parsed.ast);
  for (const name of called) {
    if (FOREIGN_FUNCTIONS.has(name)) {
      throw new CelCompileError(`compilation failed: undeclared reference to '${name}'`);
    }
  }
  renameCalls(parsed.ast);
  const checked = parsed.check();
  if (!checked.valid) {
    const unsupported = [...called].find((name) => UNSUPPORTED_FUNCTIONS.has(name));
    throw new CelCompileError(
      unsupported
        ? `compilation failed: ${unsupported}() is a Kubernetes CEL function that dex-forward-auth does not provide`
        : `compilation failed: ${firstLine(checked.error)}`,
    );
  }
  if (mustBeBool && checked.type !== 'bool') {
    throw new CelCompileError('must evaluate to bool');
  }
  return {
    expression,
    ast: parsed.ast,
    run(input) {
      const meter = { cost: 0 };
      let result: unknown;
      try {
        result = parsed({ [variable]: metered(input, meter) });
      } catch (error) {
        if (meter.cost > PER_CALL_COST_LIMIT) throw costExceeded();
        throw new CelEvaluationError(firstLine(error));
      }
      if (meter.cost > PER_CALL_COST_LIMIT) throw costExceeded();
      return unwrap(result);
    },
  };
}

const costExceeded = () => new CelEvaluationError('operation cancelled: actual cost limit exceeded');

const KEYWORDS = new Set([
  'true',
  'false',
  'null',
  'in',
  'as',
  'break',
  'const',
  'continue',
  'else',
  'for',
  'function',
  'if',
  'import',
  'let',
  'loop',
  'package',
  'namespace',
  'return',
  'var',
  'void',
  'while',
]);

/** Kubernetes' cel.Unescape: `a__dot__b` → `a.b`; undefined when the name is not an escape. */
export function unescapeName(escaped: string): string | undefined {
  if (!escaped.includes('__')) return undefined;
  let ok = true;
  const out = escaped.replace(/__[^_]+__/g, (match) => {
    const inner = match.slice(2, -2);
    switch (inner) {
      case 'underscores':
        return '__';
      case 'dot':
        return '.';
      case 'dash':
        return '-';
      case 'slash':
        return '/';
    }
    if (KEYWORDS.has(inner)) {
      if (match.length !== escaped.length) ok = false;
      return inner;
    }
    ok = false;
    return '';
  });
  return ok && out !== escaped ? out : undefined;
}

const RAW = Symbol('raw');

/**
 * Wraps JSON data so that every value read costs one unit and escaped field names resolve. The
 * wrapping is lazy (one level at a time) and invisible to CEL: arrays stay arrays.
 */
function metered(value: unknown, meter: { cost: number }): unknown {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const isArray = Array.isArray(value);
  return new Proxy(value as object, {
    get(target, key, receiver) {
      if (key === RAW) return target;
      if (typeof key === 'symbol' || key === 'constructor' || key === 'length') {
        return Reflect.get(target, key, receiver);
      }
      meter.cost++;
      if (meter.cost > PER_CALL_COST_LIMIT) throw costExceeded();
      let found: unknown = Reflect.get(target, key, receiver);
      if (found === undefined && !isArray && !Object.hasOwn(target, key)) {
        const name = unescapeName(key);
        if (name !== undefined) found = (target as Record<string, unknown>)[name];
      }
      return metered(found, meter);
    },
    has(target, key) {
      if (Reflect.has(target, key)) return true;
      const name = typeof key === 'string' && !isArray ? unescapeName(key) : undefined;
      return name !== undefined && Object.hasOwn(target, name);
    },
    getOwnPropertyDescriptor(target, key) {
      const own = Reflect.getOwnPropertyDescriptor(target, key);
      if (own || typeof key !== 'string' || isArray) return own;
      const name = unescapeName(key);
      return name === undefined ? undefined : Reflect.getOwnPropertyDescriptor(target, name);
    },
  });
}

/** Strips the metering wrappers from a result (lists of claim values, nested objects). */
function unwrap(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const raw = (value as { [RAW]?: unknown })[RAW];
  if (raw !== undefined) return raw;
  if (Array.isArray(value)) return value.map(unwrap);
  return value;
}
