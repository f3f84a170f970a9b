import { createHash } from 'node:crypto';
import { globSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import {
  type ClusterRole,
  type ClusterRoleBinding,
  expandLists,
  parseRbacObject,
  type RbacObjects,
} from './rbacObjects.ts';
import { normaliseRulePath, type Rule } from './rules.ts';

/**
 * Reads AUTHZ_CONFIG (DESIGN §6) and the RBAC files it names into a PolicySpec, reporting every
 * problem at once. Reading and parsing are split so that the reloader can skip parsing when
 * nothing changed (`snapshot` → hash).
 *
 * ```yaml
 * default: deny
 * rules:
 *   - host: grafana.example.com
 *     path: /admin
 *     allow: { groups: ["oidc:admins"], users: [], emails: [], emailDomains: ["example.com"] }
 * rbac:
 *   files: ["/etc/dex-forward-auth/rbac/*.yaml"]
 *   kubernetes: false
 * ```
 */

export interface PolicySpec {
  /** What happens when no rule matches and RBAC (when set) does not allow. */
  readonly defaultAllow: boolean;
  readonly rules: readonly Rule[];
  /** RBAC configured (files and/or kubernetes): decides after the rules. */
  readonly rbacEnabled: boolean;
  readonly kubernetes: boolean;
  readonly fileObjects: RbacObjects;
  /** Files actually read for RBAC, for logs. */
  readonly rbacFiles: readonly string[];
}

export interface PolicyLoad {
  readonly spec: PolicySpec | undefined;
  readonly problems: readonly string[];
  /** Not fatal (a glob matching nothing, a duplicate object name). */
  readonly warnings: readonly string[];
}

/** The raw bytes a policy is built from, and their hash. */
export interface PolicySnapshot {
  readonly hash: string;
  readonly configPath: string;
  readonly configText: string | undefined;
  readonly configError: string | undefined;
  readonly files: readonly {
    readonly path: string;
    readonly text: string | undefined;
    readonly error?: string;
  }[];
  readonly globProblems: readonly string[];
  readonly globWarnings: readonly string[];
  /** Directories whose changes may change the policy (the config's, each pattern's fixed part). */
  readonly dirs: readonly string[];
}

const nameList = z.array(z.string().trim().min(1)).default([]);

const allowSchema = z.strictObject({
  users: nameList,
  groups: nameList,
  emails: nameList,
  emailDomains: z
    .array(
      z
        .string()
        .trim()
        .regex(/^(\*|(\*\.|\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$/i, {
          message: 'must be a domain (example.com), a subdomain pattern (*.example.com) or *',
        }),
    )
    .default([]),
});

const HOST_PATTERN =
  /^(\*\.)?[a-z0-9]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/;

const ruleSchema = z.strictObject({
  host: z
    .string()
    .trim()
    .toLowerCase()
    .regex(HOST_PATTERN, { message: 'must be a host name (grafana.example.com) or *.example.com' })
    .optional(),
  path: z
    .string()
    .trim()
    .regex(/^\/[\x21-\x7e]*$/, { message: 'must start with / and contain no spaces' })
    .optional(),
  allow: allowSchema.optional(),
});

const fileSchema = z.strictObject({
  default: z.enum(['allow', 'deny']).optional(),
  rules: z.array(ruleSchema).default([]),
  rbac: z
    .strictObject({
      files: z.array(z.string().trim().min(1)).default([]),
      kubernetes: z.boolean().default(false),
    })
    .optional(),
});

type FileShape = z.infer<typeof fileSchema>;

function formatIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
  return `${path || '(top level)'}: ${issue.message}`;
}

const GLOB_CHARS = /[*?[\]{}]/;

/** A policy or RBAC file larger than this is refused (a ConfigMap holds at most 1 MiB). */
export const MAX_POLICY_FILE_BYTES = 4 * 1024 * 1024;
/** A glob matching more files than this is refused. */
export const MAX_RBAC_FILES = 1000;

/** Reads a policy file: bounded in size, and strict UTF-8 (no silent replacement characters). */
export function readPolicyFile(path: string): string {
  const size = statSync(path).size;
  if (size > MAX_POLICY_FILE_BYTES) {
    throw new Error(`${size} bytes, more than the ${MAX_POLICY_FILE_BYTES} bytes allowed`);
  }
  const bytes = readFileSync(path);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error('not UTF-8 text');
  }
}

function readProblem(error: unknown): string {
  return `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
}

/**
 * YAML text → its documents as plain values, never throwing: syntax errors, alias bombs (more
 * than 100 aliases: the yaml library's guard), nesting deep enough to exhaust the stack, and
 * anything else the parser throws become problems.
 */
export function yamlDocuments(text: string, where: string, problems: string[]): unknown[] {
  const depth = flowDepth(text);
  if (depth > MAX_FLOW_DEPTH) {
    problems.push(`${where}: brackets nested ${depth} deep, more than the ${MAX_FLOW_DEPTH} allowed`);
    return [];
  }
  try {
    const docs = parseAllDocuments(text);
    const values: unknown[] = [];
    for (const [i, doc] of (Array.isArray(docs) ? docs : [docs]).entries()) {
      const at = docs.length > 1 ? `${where} (document ${i + 1})` : where;
      if (doc.errors.length > 0) {
        problems.push(...doc.errors.map((e) => `${at}: ${e.message.split('\n')[0]}`));
        values.push(undefined);
        continue;
      }
      values.push(doc.toJS({ maxAliasCount: 100 }));
    }
    return values;
  } catch (error) {
    const reason = error instanceof RangeError ? 'nested too deeply' : (error as Error).message;
    problems.push(`${where}: cannot be parsed (${reason.split('\n')[0]})`);
    return [];
  }
}

/** Deeper `[`/`{` nesting than this is refused before parsing (the parser's time grows with it). */
const MAX_FLOW_DEPTH = 100;

/** The deepest `[`/`{` nesting, counting brackets outside quotes and comments; linear. */
function flowDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let quote: string | undefined;
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (comment) {
      if (c === '\n') comment = false;
    } else if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1] as string))) {
      comment = true;
    } else if (c === '[' || c === '{') {
      depth++;
      if (depth > max) max = depth;
    } else if ((c === ']' || c === '}') && depth > 0) {
      depth--;
    }
  }
  return max;
}

type SnapshotFile = PolicySnapshot['files'][number];

/** What the RBAC globs gather while a snapshot is taken. */
interface Gathered {
  readonly files: SnapshotFile[];
  readonly globProblems: string[];
  readonly globWarnings: string[];
  readonly dirs: Set<string>;
  readonly seen: Set<string>;
}

interface SnapshotIo {
  readonly readFile: (path: string) => string;
  readonly glob: (pattern: string) => string[];
}

/** Reads the config file, expands the RBAC globs and reads those files. Never throws. */
export function takeSnapshot(
  configPath: string,
  readFile: (path: string) => string = readPolicyFile,
  glob: (pattern: string) => string[] = (p) => globSync(p),
): PolicySnapshot {
  let configText: string | undefined;
  let configError: string | undefined;
  try {
    configText = readFile(configPath);
  } catch (error) {
    configError = readProblem(error);
  }
  const base = dirname(resolve(configPath));
  const gathered: Gathered = {
    files: [],
    globProblems: [],
    globWarnings: [],
    dirs: new Set([base]),
    seen: new Set(),
  };
  if (configText !== undefined) {
    for (const pattern of rbacPatterns(configText, configPath)) {
      gatherPattern(pattern, base, { readFile, glob }, gathered);
    }
  }
  const { files, globProblems, globWarnings, dirs } = gathered;
  const hash = snapshotHash(configText, configError, files, globProblems);
  return { hash, configPath, configText, configError, files, globProblems, globWarnings, dirs: [...dirs] };
}

/** The `rbac.files` patterns; only the file list is needed here, the full validation is parsePolicy's. */
function rbacPatterns(configText: string, configPath: string): string[] {
  const first = yamlDocuments(configText, configPath, [])[0] as { rbac?: { files?: unknown } } | undefined;
  const raw = typeof first === 'object' && first !== null ? first.rbac?.files : undefined;
  return Array.isArray(raw) ? raw.filter((p): p is string => typeof p === 'string') : [];
}

/** One `rbac.files` entry: the directory to watch, its matches (bounded), and each match read once. */
function gatherPattern(pattern: string, base: string, io: SnapshotIo, gathered: Gathered): void {
  const absolute = isAbsolute(pattern) ? pattern : resolve(base, pattern);
  const fixed = absolute.split(GLOB_CHARS)[0] as string;
  gathered.dirs.add(fixed.endsWith('/') ? fixed.slice(0, -1) || '/' : dirname(fixed));
  const isGlob = GLOB_CHARS.test(pattern);
  const matches = isGlob ? globMatches(pattern, absolute, io, gathered) : [absolute];
  for (const path of matches ?? []) {
    if (gathered.seen.has(path)) continue;
    gathered.seen.add(path);
    const file = readSnapshotFile(path, isGlob, io);
    if (file) gathered.files.push(file);
  }
}

/** A glob's matches, sorted; undefined (and a problem) when it fails or matches too many files. */
function globMatches(
  pattern: string,
  absolute: string,
  io: SnapshotIo,
  gathered: Gathered,
): string[] | undefined {
  let matches: string[];
  try {
    matches = io.glob(absolute).sort();
  } catch (error) {
    gathered.globProblems.push(`rbac.files "${pattern}": ${(error as Error).message}`);
    return undefined;
  }
  if (matches.length === 0) gathered.globWarnings.push(`rbac.files "${pattern}" matches no file`);
  if (matches.length > MAX_RBAC_FILES) {
    gathered.globProblems.push(
      `rbac.files "${pattern}" matches ${matches.length} files, more than ${MAX_RBAC_FILES}`,
    );
    return undefined;
  }
  return matches;
}

function readSnapshotFile(path: string, fromGlob: boolean, io: SnapshotIo): SnapshotFile | undefined {
  try {
    return { path, text: io.readFile(path) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // A directory matched by a glob is not a problem; a named file that is missing is.
    if (code === 'EISDIR' && fromGlob) return undefined;
    return { path, text: undefined, error: readProblem(error) };
  }
}

function snapshotHash(
  configText: string | undefined,
  configError: string | undefined,
  files: readonly SnapshotFile[],
  globProblems: readonly string[],
): string {
  const hash = createHash('sha256');
  hash.update(configText ?? `\0error:${configError}`);
  for (const f of files) hash.update(`\0${f.path}\0${f.text ?? `\0error:${f.error}`}`);
  for (const p of globProblems) hash.update(`\0glob:${p}`);
  return hash.digest('hex');
}

/** Validates a snapshot into a PolicySpec, or reports every problem. */
export function parsePolicy(snapshot: PolicySnapshot): PolicyLoad {
  const at = `AUTHZ_CONFIG ${snapshot.configPath}`;
  const problems: string[] = [];
  const warnings: string[] = [...snapshot.globWarnings];
  if (snapshot.configText === undefined) {
    return { spec: undefined, problems: [`${at}: ${snapshot.configError ?? 'cannot be read'}`], warnings };
  }

  let shape: FileShape | undefined;
  const before = problems.length;
  const docs = yamlDocuments(snapshot.configText, at, problems);
  if (docs.length > 1) problems.push(`${at}: expected one YAML document, found ${docs.length}`);
  if (problems.length === before) {
    const parsed = fileSchema.safeParse(docs[0] ?? {});
    if (parsed.success) shape = parsed.data;
    else problems.push(...parsed.error.issues.map((i) => `${at}: ${formatIssue(i)}`));
  }
  problems.push(...snapshot.globProblems.map((p) => `${at}: ${p}`));

  const roles = new Map<string, ClusterRole>();
  const bindings = new Map<string, ClusterRoleBinding>();
  for (const file of snapshot.files) {
    if (file.text === undefined) {
      problems.push(`RBAC file ${file.path}: ${file.error ?? 'cannot be read'}`);
      continue;
    }
    const fileDocs = yamlDocuments(file.text, `RBAC file ${file.path}`, problems);
    for (const [i, value] of fileDocs.entries()) {
      const where = `RBAC file ${file.path} (document ${i + 1})`;
      if (value === null || value === undefined) continue;
      for (const item of expandLists(value)) {
        const obj = parseRbacObject(item, where, problems);
        if (obj === undefined || obj === 'ignored') continue;
        const target: Map<string, ClusterRole | ClusterRoleBinding> =
          obj.kind === 'ClusterRole' ? roles : bindings;
        if (target.has(obj.name))
          warnings.push(`${where}: ${obj.kind} ${obj.name} is defined again; the later one wins`);
        target.set(obj.name, obj);
      }
    }
  }

  if (problems.length > 0 || !shape) return { spec: undefined, problems, warnings };

  const rbacEnabled = shape.rbac !== undefined;
  const spec: PolicySpec = {
    defaultAllow: shape.default === undefined ? !rbacEnabled : shape.default === 'allow',
    rules: shape.rules.map((r, i) => ({
      index: i + 1,
      host: r.host,
      path: normaliseRulePath(r.path),
      allow: r.allow ?? { users: [], groups: [], emails: [], emailDomains: [] },
    })),
    rbacEnabled,
    kubernetes: shape.rbac?.kubernetes ?? false,
    fileObjects: { roles: [...roles.values()], bindings: [...bindings.values()] },
    rbacFiles: snapshot.files.map((f) => f.path),
  };
  return { spec, problems: [], warnings };
}

/** Reads and validates a policy in one go (start-up, tests). */
export function loadPolicy(configPath: string, readFile?: (path: string) => string): PolicyLoad {
  return parsePolicy(takeSnapshot(configPath, readFile));
}
