/**
 * The command line: what `dex-forward-auth …` means (a command to run, a help text, a usage error)
 * and every help text. Pure: src/cli.ts prints and runs; tests read these directly.
 */

export const COMMANDS = ['serve', 'doctor', 'sessions', 'demo', 'help', 'version'] as const;
export type Command = (typeof COMMANDS)[number];

const SUMMARY = 'single sign-on (Dex, OIDC) for dashboards behind Traefik, Caddy or nginx';

export function generalHelp(version: string): string {
  return `dex-forward-auth ${version}: ${SUMMARY}

Usage: dex-forward-auth <command> [options]

Commands:
  serve      run the service (the default command); configured by environment variables
  doctor     check a configuration live (provider, client, callback URLs, cookies, Redis), then exit
  sessions   list and end users' sessions through the admin API (ADMIN_PORT)
  demo       run everything on this machine: Dex stand-in, gateway, sample dashboards, Redis
  help       show this help; \`help <command>\` describes one command
  version    print the version

Options:
  -h, --help     show this help (after a command: that command's help)
  -v, --version  print the version

Settings are environment variables (OIDC_ISSUER_URL, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
COOKIE_SECRET, REDIS_URL, …): see "Configuration" in the README. Node.js 22.13 or newer (24 LTS).
`;
}

const SESSIONS_HELP = `Usage: dex-forward-auth sessions <action> [options]

Lists and ends sessions through the admin API (ADMIN_PORT; see the README's "Your sessions and
the admin API"). <user> is the user's sub claim, as /oauth2/userinfo shows it.

Actions:
  list <user>              the user's sessions: id, created, last seen, address, host, browser
  end <user> <session>     end one session (an id from \`list\`)
  end-user <user>          end every session of the user (sign out everywhere)
  end-all                  end every session of every user

Options:
  --url <url>          the admin API (default http://127.0.0.1:$ADMIN_PORT)
  --token-file <file>  the bearer token's file (default $ADMIN_TOKEN_FILE); never printed
  --cert-file <file>   mutual TLS: this client certificate (PEM) …
  --key-file <file>    … and its key
  --ca-file <file>     trust this CA for the API's server certificate
  --json               print the API's JSON answer
  -h, --help           show this help

Exit status: 0 done, 1 the API refused or failed (wrong token, no such session, unreachable),
2 bad arguments.
`;

const HELP: Record<Exclude<Command, 'help' | 'version'>, string> = {
  sessions: SESSIONS_HELP,
  serve: `Usage: dex-forward-auth serve

Runs the forward-auth service on PORT (default 4180): GET /auth for Traefik ForwardAuth and
Caddy forward_auth, GET /oauth2/auth for nginx auth_request, the /oauth2/* sign-in endpoints,
/kubeconfig, /healthz, /readyz and /metrics; / is a small page saying what this is.

Takes no options: every setting is an environment variable, or a key of the YAML file named by
CONFIG_FILE (the environment wins); X_FILE reads X from a file (Kubernetes secrets). Required:
OIDC_ISSUER_URL, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET and COOKIE_SECRET (or COOKIE_SECRETS).
Without REDIS_URL (or REDIS_SENTINELS, REDIS_CLUSTER_NODES) sessions stay in memory: one replica.
The README's "Configuration" lists every setting; \`dex-forward-auth doctor\` checks them live.

SIGTERM drains: /readyz answers 503 for SHUTDOWN_DELAY, then in-flight requests finish.

Exit status: 0 after a drain, 1 when it cannot start, 2 for invalid settings (all listed at once).
`,
  doctor: `Usage: dex-forward-auth doctor [--json] [--host <host>]… [--authentication-config <file>] [--token <jwt>]

Loads the configuration from the environment exactly as \`serve\` does, checks it live and prints
one line per check: Dex discovery and keys (the issuer byte for byte), the client id and secret,
the callback URLs Dex accepts for the client, the cookie domain and secrets, Redis. No secret is
ever printed.

Options:
  --json           print a machine-readable report
  --host <host>    also check the callback URL of this protected host (repeatable), for when
                   REDIRECT_URL is unset, e.g. --host grafana.example.com
  --authentication-config <file>
                   check this AuthenticationConfiguration (instead of AUTHENTICATION_CONFIG) and
                   show what a sample token maps to, beside the OIDC_USERNAME_*/GROUPS_* settings
  --token <jwt>    the sample token (decoded, not verified, never printed); default: the demo's
                   admin user
  -h, --help       show this help

In a clone: npm run doctor -- [options]

Exit status: 0 no problems (warnings allowed), 1 problems found, 2 bad arguments.
`,
  demo: `Usage: dex-forward-auth demo          (in a clone: npm run demo)

Starts everything on this machine, on loopback only, and prints what to open:
  a Dex stand-in (http://127.0.0.1:5556/dex) with demo users (password: password);
  a gateway emulating Traefik's ForwardAuth on port 8080 in front of two sample dashboards,
  http://dashboard.demo.localhost:8080/ and http://grafana.demo.localhost:8080/;
  dex-forward-auth: two replicas sharing a Redis it starts when redis-server is installed,
  otherwise one replica with sessions in memory;
  and a ready-to-paste \`doctor\` command for the demo's settings. Ctrl-C stops everything.
Needs the development dependencies (npm ci in a clone of the repository).

Environment:
  DEMO_GATEWAY_PORT   gateway port (default 8080)
  DEMO_DEX_PORT       Dex stand-in port (default 5556)
  DEMO_AUTH_PORT      dex-forward-auth's port (default 4180; a second replica takes the next one)
  DEMO_REDIS          off: keep sessions in memory even when redis-server is installed
  LOG_LEVEL           the service's log level (default info; printed readably)

Exit status: 0 after Ctrl-C, 1 when it cannot start (e.g. a port is taken), 2 bad arguments.
`,
};

export function commandHelp(command: Command, version: string): string {
  return command === 'help' || command === 'version' ? generalHelp(version) : HELP[command];
}

/** What one command line asks for. */
export type Invocation =
  | {
      readonly kind: 'run';
      readonly command: 'serve' | 'doctor' | 'sessions' | 'demo';
      readonly args: readonly string[];
    }
  | { readonly kind: 'print'; readonly text: string; readonly exitCode: 0 }
  | { readonly kind: 'usage'; readonly text: string; readonly exitCode: 2 };

const isCommand = (word: string): word is Command => (COMMANDS as readonly string[]).includes(word);
const isHelpFlag = (word: string): boolean => word === '-h' || word === '--help';

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] as number;
      const substitution = previous + (a[i - 1] === b[j - 1] ? 0 : 1);
      row[j] = Math.min(current + 1, (row[j - 1] as number) + 1, substitution);
      previous = current;
    }
  }
  return row[b.length] as number;
}

function unknown(word: string, version: string): Invocation {
  const near = COMMANDS.find((c) => distance(word, c) <= 2);
  const hint = near ? ` (did you mean \`${near}\`?)` : '';
  const text = `dex-forward-auth: unknown command "${word}"${hint}\n\n${generalHelp(version)}`;
  return { kind: 'usage', text, exitCode: 2 };
}

/** Reads `dex-forward-auth <argv…>` (argv without node and the script). */
export function parseCommandLine(argv: readonly string[], version: string): Invocation {
  const [first, ...rest] = argv;
  if (first === undefined) return { kind: 'run', command: 'serve', args: [] };
  if (isHelpFlag(first)) return { kind: 'print', text: generalHelp(version), exitCode: 0 };
  if (first === '-v' || first === '--version') return { kind: 'print', text: `${version}\n`, exitCode: 0 };
  if (!isCommand(first)) return unknown(first, version);
  if (first === 'help') {
    const topic = rest[0];
    if (topic === undefined) return { kind: 'print', text: generalHelp(version), exitCode: 0 };
    return isCommand(topic)
      ? { kind: 'print', text: commandHelp(topic, version), exitCode: 0 }
      : unknown(topic, version);
  }
  if (rest.some(isHelpFlag)) return { kind: 'print', text: commandHelp(first, version), exitCode: 0 };
  if (first === 'version') return { kind: 'print', text: `${version}\n`, exitCode: 0 };
  if (first === 'doctor' || first === 'sessions') return { kind: 'run', command: first, args: rest };
  if (rest.length > 0) {
    const text = `dex-forward-auth ${first}: takes no arguments (got "${rest.join(' ')}")\n\n${commandHelp(first, version)}`;
    return { kind: 'usage', text, exitCode: 2 };
  }
  return { kind: 'run', command: first, args: [] };
}
