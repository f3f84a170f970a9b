import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/**
 * `dex-forward-auth sessions …`: the admin API's client (src/routes/admin.ts). Run it inside the
 * pod (`kubectl exec deploy/dex-forward-auth -- dex-forward-auth sessions list <sub>`): the URL
 * and the token file then default to ADMIN_PORT and ADMIN_TOKEN_FILE of the pod's environment.
 * Exit status: 0 done, 1 the API refused or failed (401, 404, 5xx, unreachable), 2 bad arguments.
 */

interface Options {
  url?: string;
  tokenFile?: string;
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  json: boolean;
}

const FLAGS: Record<string, keyof Omit<Options, 'json'>> = {
  '--url': 'url',
  '--token-file': 'tokenFile',
  '--cert-file': 'certFile',
  '--key-file': 'keyFile',
  '--ca-file': 'caFile',
};

interface Call {
  readonly method: 'GET' | 'DELETE';
  readonly path: string;
}

/** The admin API call an action means, or a usage error. */
export function callFor(words: readonly string[]): Call | string {
  const [action, ...rest] = words;
  const user = (i: number) => encodeURIComponent(rest[i] as string);
  const arity: Record<string, number> = { list: 1, end: 2, 'end-user': 1, 'end-all': 0 };
  if (action === undefined || arity[action] === undefined) return `unknown action "${action ?? ''}"`;
  if (rest.length !== arity[action] || rest.some((w) => w === '')) {
    return `${action} takes ${arity[action]} argument(s), got ${rest.length}`;
  }
  switch (action) {
    case 'list':
      return { method: 'GET', path: `/admin/users/${user(0)}/sessions` };
    case 'end':
      return { method: 'DELETE', path: `/admin/users/${user(0)}/sessions/${user(1)}` };
    case 'end-user':
      return { method: 'DELETE', path: `/admin/users/${user(0)}/sessions` };
    default:
      return { method: 'DELETE', path: '/admin/sessions' };
  }
}

export function parseSessionsArgs(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { call: Call; options: Options } | string {
  const options: Options = { json: false };
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const flag = FLAGS[arg];
    if (flag !== undefined) {
      const value = args[++i];
      if (value === undefined) return `${arg} needs a value`;
      options[flag] = value;
    } else if (arg === '--json') options.json = true;
    else if (arg.startsWith('--')) return `unknown option ${arg}`;
    else words.push(arg);
  }
  const call = callFor(words);
  if (typeof call === 'string') return call;
  options.url ??= env['ADMIN_PORT'] ? `http://127.0.0.1:${env['ADMIN_PORT']}` : undefined;
  options.tokenFile ??= env['ADMIN_TOKEN_FILE'];
  if (options.url === undefined) return 'no --url (and ADMIN_PORT is not set)';
  return { call, options };
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

function send(call: Call, options: Options, token: string | undefined): Promise<Answer> {
  const url = new URL(call.path, options.url);
  const tls = {
    ...(options.certFile ? { cert: readFileSync(options.certFile) } : {}),
    ...(options.keyFile ? { key: readFileSync(options.keyFile) } : {}),
    ...(options.caFile ? { ca: readFileSync(options.caFile) } : {}),
  };
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: call.method, headers, timeout: 30_000, ...tls },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', reject);
    req.end();
  });
}

interface Listed {
  readonly id: string;
  readonly createdAt: string;
  readonly lastSeenAt: string;
  readonly clientAddress: string | null;
  readonly host: string | null;
  readonly userAgent: string | null;
}

function describe(call: Call, body: string): string {
  const parsed = JSON.parse(body) as { sessions?: Listed[]; ended?: number };
  if (parsed.sessions) {
    if (parsed.sessions.length === 0) return 'no sessions\n';
    return parsed.sessions
      .map(
        (s) =>
          `${s.id}  created ${s.createdAt}  last seen ${s.lastSeenAt}  ${s.clientAddress ?? '-'}  ${s.host ?? '-'}  ${s.userAgent ?? '-'}\n`,
      )
      .join('');
  }
  return `${call.path === '/admin/sessions' ? 'every session: ' : ''}${parsed.ended ?? 0} session(s) ended\n`;
}

const REFUSALS: Record<number, string> = {
  401: 'the admin API refused the token (or the client certificate)',
  404: 'no such user session (ended already, or not this user’s)',
};

/** Runs `sessions <args>`; returns the exit status. */
export async function sessionsCommand(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  out: { write(text: string): unknown },
  err: { write(text: string): unknown },
): Promise<number> {
  const parsed = parseSessionsArgs(args, env);
  if (typeof parsed === 'string') {
    err.write(`dex-forward-auth sessions: ${parsed} (see \`dex-forward-auth sessions --help\`)\n`);
    return 2;
  }
  const { call, options } = parsed;
  try {
    const token = options.tokenFile ? readFileSync(options.tokenFile, 'utf8').trim() : undefined;
    const answer = await send(call, options, token);
    if (answer.status >= 200 && answer.status < 300) {
      out.write(options.json ? `${answer.body}\n` : describe(call, answer.body));
      return 0;
    }
    err.write(
      `dex-forward-auth sessions: ${REFUSALS[answer.status] ?? `the admin API answered ${answer.status}`}\n`,
    );
    return 1;
  } catch (error) {
    err.write(`dex-forward-auth sessions: ${(error as Error).message}\n`);
    return 1;
  }
}
