/**
 * A Dex stand-in for tests and the demo, built on panva's `oidc-provider` (v9).
 *
 * It imitates the parts of Dex (v2.45) that a relying party can observe; see
 * /work/shared/spec/dex-and-kubernetes.md §A, §D and §E:
 * - issuer string exactly as configured (trailing slash by default, like Deckhouse), `/keys`, `/userinfo`,
 *   no `end_session_endpoint`, no revocation, no DPoP, no `iss` authorization response parameter;
 * - RSA-2048/RS256 keys with a 40-hex `kid`, Dex-style rotation (`rotateKeys()`);
 * - Dex-shaped ID tokens: opaque protobuf `sub`, email/profile/groups claims in the ID token, `at_hash`
 *   (and `c_hash` on the code exchange), array `aud` + `azp` for `audience:server:client_id:<peer>` scopes;
 * - Dex-shaped token responses (`token_type: "bearer"`, `expires_in` = ID token lifetime left, no `scope`)
 *   and Dex-style client authentication (Basic *and* POST for every client, 401 "Invalid client credentials.");
 * - no SSO: every `/auth` shows the password form again; `offline_access` alone yields a refresh token;
 * - refresh tokens: `strict` (oidc-provider: reuse revokes the grant) or `dex` (rotation with reuse window,
 *   Dex error codes), and "one refresh token per user and client".
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { Socket } from 'node:net';
import {
  type CryptoKey,
  decodeJwt,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  type KeyObject,
  SignJWT,
} from 'jose';
import Provider, {
  type Adapter,
  type AdapterPayload,
  type Configuration,
  type KoaContextWithOIDC,
} from 'oidc-provider';
import { freePort } from './ports.ts';

export type { JWK } from 'jose';

export interface DexUser {
  /** What the user types into the login form (Dex: the static password's email). */
  login: string;
  password: string;
  /** Dex connector user id; together with the connector id 'local' it forms the opaque `sub`. */
  userId: string;
  email: string;
  emailVerified: boolean;
  /** Dex puts the connector's username into `name`. */
  name: string;
  preferredUsername?: string;
  groups: string[];
}

const GROUP_AREAS = [
  'platform',
  'payments',
  'data',
  'security',
  'mobile',
  'web',
  'infra',
  'ml',
  'search',
  'growth',
] as const;
const GROUP_TOPICS = [
  'observability',
  'reliability',
  'billing',
  'ingest',
  'frontend',
  'backend',
  'oncall',
  'release',
  'analytics',
  'identity',
  'storage',
  'networking',
  'compliance',
  'tooling',
  'design',
] as const;

/** 150 realistic group names such as `team-platform-observability-000`. */
function manyGroups(count: number): string[] {
  const groups: string[] = [];
  for (let i = 0; i < count; i++) {
    const area = GROUP_AREAS[i % GROUP_AREAS.length];
    const topic = GROUP_TOPICS[Math.floor(i / GROUP_AREAS.length) % GROUP_TOPICS.length];
    groups.push(`team-${area}-${topic}-${String(i).padStart(3, '0')}`);
  }
  return groups;
}

/** Demo/test users. The password is `password` for all of them. */
export const DEMO_USERS: DexUser[] = [
  {
    login: 'admin@example.com',
    password: 'password',
    userId: '08a8684b-db88-4b73-90a9-3cd1661f5466',
    email: 'admin@example.com',
    emailVerified: true,
    name: 'admin',
    preferredUsername: 'admin',
    groups: ['admins', 'engineering'],
  },
  {
    login: 'dev@example.com',
    password: 'password',
    userId: '41331323-6f44-45e6-b3b9-2c4b60c02be5',
    email: 'dev@example.com',
    emailVerified: true,
    name: 'dev',
    groups: ['engineering'],
  },
  {
    login: 'unverified@example.com',
    password: 'password',
    userId: '7d2b4c1e-5a3f-4e8b-9c6d-1f0a2b3c4d5e',
    email: 'unverified@example.com',
    emailVerified: false,
    name: 'unverified',
    groups: ['engineering'],
  },
  {
    login: 'many@example.com',
    password: 'password',
    userId: 'c0ffee00-1234-4abc-8def-0123456789ab',
    email: 'many@example.com',
    emailVerified: true,
    name: 'many',
    groups: manyGroups(150),
  },
];

export interface DexClient {
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
}

export interface DexOptions {
  /** Default: a free port. */
  port?: number;
  /** Default '/' -> issuer `http://127.0.0.1:<port>/`; '/dex' -> `http://127.0.0.1:<port>/dex`. */
  issuerPath?: string;
  /** Host written into the issuer (default '127.0.0.1'); the listener is always on 127.0.0.1. */
  host?: string;
  clients: DexClient[];
  /** Default: DEMO_USERS (copied). The array stays live: removing a user simulates a deleted account. */
  users?: DexUser[];
  /** ID token (and access token) lifetime in seconds, default 86400. */
  idTokenTtl?: number;
  /** List the users (and their password) under the login form, as the demo does. Default false. */
  showUsers?: boolean;
  /** Default 'strict'. */
  refreshMode?: 'strict' | 'dex';
  /** Seconds, default 0 (Dex's default: no reuse). Only used in 'dex' mode. */
  reuseInterval?: number;
  /** Default true (Dex): a new code exchange for the same user+client kills the previous grant. */
  oneRefreshTokenPerUserAndClient?: boolean;
  /**
   * Default false (released Dex has none): offer RFC 7009 token revocation (`revocation_endpoint`
   * in discovery, at /token/revocation); revoking a refresh token revokes its whole grant.
   */
  revocation?: boolean;
}

export interface DexCounts {
  /** refresh_token grant requests received at /token, successful or not. */
  refreshGrants: number;
  /** authorization_code grant requests received at /token, successful or not. */
  codeGrants: number;
  /** /token responses with a status >= 400. */
  tokenErrors: number;
  /** Requests to the revocation endpoint (only with `revocation: true`). */
  revocations: number;
}

export interface MintOptions {
  /** Default: the current signing key's kid. */
  kid?: string;
  /** Default 'RS256'. For another alg without `key`, a throw-away key of that alg is generated. */
  alg?: string;
  /** Default: the current signing key. */
  key?: CryptoKey | KeyObject | JWK | Uint8Array;
  /** Seconds from now for `exp`, default idTokenTtl. Ignored when `claims.exp` is given. */
  expiresIn?: number;
}

export interface Dex {
  readonly issuer: string;
  readonly port: number;
  readonly jwksUri: string;
  readonly users: DexUser[];
  readonly counts: DexCounts;
  /** Private JWK of the current signing key (changes on rotateKeys()). */
  readonly privateJwk: JWK;
  /** kid of the current signing key. */
  readonly kid: string;
  /** The oidc-provider instance currently serving requests (replaced by rotateKeys()). */
  readonly provider: Provider;
  /**
   * Sign arbitrary claims. Defaults: iss = issuer, aud = first client id, iat = now,
   * exp = now + expiresIn. A claim given as `undefined` is left out (e.g. `{ exp: undefined }`).
   */
  mintIdToken(claims: Record<string, unknown>, opts?: MintOptions): Promise<string>;
  /** When down, every request gets its TCP connection destroyed. */
  setDown(down: boolean): void;
  /** Close the listener (and all connections); state survives. */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  /** The next n refresh grants answer with `status` (500 -> {"error":"invalid_request"} like Dex). */
  failNextRefreshes(n: number, status: number): void;
  /** Dex-style rotation: a new key signs at once; the old ones stay published. */
  rotateKeys(): Promise<void>;
  /** Moves the clock of the dex-mode reuse window forward (tests of `reuseInterval` without sleeping). */
  advanceReuseClock(seconds: number): void;
  /** The Dex-shaped `sub` of a user. */
  subjectOf(user: Pick<DexUser, 'userId'>): string;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers

const CLAIMED = 'Refresh token is invalid or has already been claimed by another client.';
const CONNECTOR_ID = 'local';
const AUDIENCE_SCOPE_PREFIX = 'audience:server:client_id:';

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return out;
}

/** Dex `sub`: base64url (unpadded) protobuf `{1: user_id, 2: connector_id}`. */
export function dexSubject(userId: string, connectorId = CONNECTOR_ID): string {
  const uid = Buffer.from(userId, 'utf8');
  const cid = Buffer.from(connectorId, 'utf8');
  return Buffer.concat([
    Buffer.from([0x0a, ...varint(uid.length)]),
    uid,
    Buffer.from([0x12, ...varint(cid.length)]),
    cid,
  ]).toString('base64url');
}

/** OIDC `at_hash` / `c_hash` for RS256. */
function halfHash(value: string): string {
  const digest = createHash('sha256').update(value, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

function escapeHtml(s: string): string {
  return s
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

async function readBody(stream: NodeJS.ReadableStream, limit = 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buf.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    pragma: 'no-cache',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** Basic credentials are form-encoded before base64 (RFC 6749 §2.3.1); Dex QueryUnescapes them. */
function formDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, '%20'));
  } catch {
    return s;
  }
}

function formEncode(s: string): string {
  return encodeURIComponent(s);
}

interface SigningKey {
  kid: string;
  jwk: JWK;
  key: CryptoKey;
}

async function newSigningKey(): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const kid = randomBytes(20).toString('hex');
  const jwk = { ...(await exportJWK(privateKey)), kid, use: 'sig', alg: 'RS256' };
  return { kid, jwk, key: privateKey };
}

// ---------------------------------------------------------------------------------------------------------
// Storage: an unbounded Map adapter with expiry (the built-in memory adapter is an LRU of 1000 entries).

const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

class MapStore {
  readonly data = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  readonly grantMembers = new Map<string, Set<string>>();
  readonly sessionUids = new Map<string, string>();
  readonly userCodes = new Map<string, string>();
  private writes = 0;

  get(key: string): AdapterPayload | undefined {
    const entry = this.data.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.data.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  set(key: string, payload: AdapterPayload, expiresAt: number): void {
    this.data.set(key, { payload, expiresAt });
    if (++this.writes % 5000 === 0) this.sweep();
  }

  revokeGrant(grantId: string): void {
    const members = this.grantMembers.get(grantId);
    if (members) {
      for (const key of members) this.data.delete(key);
      this.grantMembers.delete(grantId);
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.data) {
      if (entry.expiresAt <= now) this.data.delete(key);
    }
    for (const [grantId, members] of this.grantMembers) {
      for (const key of members) if (!this.data.has(key)) members.delete(key);
      if (members.size === 0) this.grantMembers.delete(grantId);
    }
    for (const [uid, id] of this.sessionUids)
      if (!this.data.has(`Session:${id}`)) this.sessionUids.delete(uid);
  }
}

class MapAdapter implements Adapter {
  private readonly model: string;
  private readonly store: MapStore;

  constructor(model: string, store: MapStore) {
    this.model = model;
    this.store = store;
  }

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const key = this.key(id);
    const expiresAt =
      typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
    if (this.model === 'Session' && typeof payload.uid === 'string')
      this.store.sessionUids.set(payload.uid, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      let members = this.store.grantMembers.get(payload.grantId);
      if (!members) {
        members = new Set();
        this.store.grantMembers.set(payload.grantId, members);
      }
      members.add(key);
    }
    if (payload.userCode) this.store.userCodes.set(payload.userCode, id);
    this.store.set(key, payload, expiresAt);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.store.get(this.key(id));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const id = this.store.sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const id = this.store.userCodes.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id: string): Promise<void> {
    const payload = this.store.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id: string): Promise<void> {
    this.store.data.delete(this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    this.store.revokeGrant(grantId);
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTML

/** Dex's look (its light theme: a centred panel, the blue primary button), self-contained. */
const PAGE_STYLE = `:root{color-scheme:light dark;--bg:#f3f5f8;--panel:#fff;--fg:#1b1f24;--muted:#5b6570;--border:#d3d9e0;--accent:#3f7fe6;--accent-dark:#2b63c0;--error-bg:#fdecea;--error:#a1261b}
@media (prefers-color-scheme:dark){:root{--bg:#0f141a;--panel:#18202a;--fg:#e6edf3;--muted:#a0abb7;--border:#333e4a;--accent:#5b95f0;--accent-dark:#3f7fe6;--error-bg:#3a1714;--error:#ffb4ab}}
*{box-sizing:border-box}body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.dex-header{width:100%;padding:1rem 1.5rem;display:flex;align-items:center;gap:.6rem;font-weight:600;letter-spacing:.02em}
.dex-logo{display:inline-grid;place-items:center;width:2rem;height:2rem;border-radius:.5rem;background:var(--accent);color:#fff;font-size:.95rem}
.theme-panel{width:min(26rem,calc(100% - 2rem));margin:2rem 0 1rem;background:var(--panel);border:1px solid var(--border);border-radius:12px;padding:2rem;box-shadow:0 4px 18px rgb(0 0 0 / 8%)}
.theme-heading{margin:0 0 1.25rem;font-size:1.35rem;text-align:center}
.theme-form-row{margin-bottom:1rem}.theme-form-label{display:block;font-size:.9rem;font-weight:600;margin-bottom:.3rem}
.theme-form-input{width:100%;font:inherit;padding:.55rem .7rem;border:1px solid var(--border);border-radius:6px;background:var(--panel);color:var(--fg)}
.theme-form-input:focus{outline:3px solid color-mix(in srgb,var(--accent) 45%,transparent);border-color:var(--accent)}
.dex-btn{width:100%;font:inherit;font-weight:600;padding:.6rem;border:0;border-radius:6px;background:var(--accent);color:#fff;cursor:pointer}
.dex-btn:hover,.dex-btn:focus-visible{background:var(--accent-dark)}
.dex-error-box{background:var(--error-bg);color:var(--error);border-radius:6px;padding:.6rem .8rem;margin-bottom:1rem;font-size:.95rem}
.demo-users{width:min(26rem,calc(100% - 2rem));margin:0 0 2rem;background:var(--panel);border:1px dashed var(--border);border-radius:12px;padding:1rem 1.5rem;font-size:.92rem}
.demo-users h2{font-size:1rem;margin:0 0 .4rem}.demo-users p{margin:.2rem 0 .6rem;color:var(--muted)}
.demo-users ul{list-style:none;margin:0;padding:0}.demo-users li{display:flex;flex-wrap:wrap;gap:.1rem .6rem;align-items:baseline;padding:.25rem 0;border-top:1px solid var(--border)}
.demo-users .fill{font:inherit;font-family:ui-monospace,monospace;background:none;border:0;padding:0;color:var(--accent);cursor:pointer;text-decoration:underline}
.demo-users .note{color:var(--muted);font-size:.85rem}code{font-family:ui-monospace,monospace}`;

/** Clicking a demo user fills the form (the page works without it). */
const FILL_SCRIPT = `document.querySelectorAll('.fill').forEach(function(b){b.addEventListener('click',function(){document.getElementById('login').value=b.dataset.login;var p=document.getElementById('password');p.value=b.dataset.password;p.focus();});});`;

function page(title: string, body: string, script = ''): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<header class="dex-header"><span class="dex-logo" aria-hidden="true">dex</span><span>Dex stand-in</span></header>
${body}
${script ? `<script>${script}</script>` : ''}
</body>
</html>
`;
}

/** The demo accounts under the form (the demo shows them: the first page a newcomer sees). */
function demoUsersPanel(users: readonly DexUser[]): string {
  const shared = users.every((u) => u.password === users[0]?.password) ? users[0]?.password : undefined;
  const items = users.map((u) => {
    const groups = u.groups.length > 3 ? `${u.groups.length} groups` : u.groups.join(', ') || 'no groups';
    const notes = [
      groups,
      u.emailVerified ? '' : 'email not verified',
      shared ? '' : `password ${u.password}`,
    ]
      .filter(Boolean)
      .join(' · ');
    return `<li><button type="button" class="fill" data-login="${escapeHtml(u.login)}" data-password="${escapeHtml(u.password)}">${escapeHtml(u.login)}</button><span class="note">${escapeHtml(notes)}</span></li>`;
  });
  const password = shared
    ? `<p>The password is <code>${escapeHtml(shared)}</code> for all of them; click one to fill in the form.</p>`
    : '<p>Click one to fill in the form.</p>';
  return `<section class="demo-users" aria-labelledby="demo-users-title"><h2 id="demo-users-title">Demo users</h2>${password}<ul>${items.join('')}</ul></section>`;
}

function loginPage(
  action: string,
  opts: { login?: string; error?: boolean; demoUsers?: readonly DexUser[] } = {},
): string {
  const error = opts.error
    ? '<div id="login-error" class="dex-error-box" role="alert">Invalid Email Address and password.</div>'
    : '';
  const body = `<main class="theme-panel">
<h2 class="theme-heading">Log in to Your Account</h2>
<form method="post" action="${escapeHtml(action)}">
<div class="theme-form-row">
<label class="theme-form-label" for="login">Email Address</label>
<input tabindex="1" required id="login" name="login" type="text" class="theme-form-input" placeholder="email address" autocomplete="username" value="${escapeHtml(opts.login ?? '')}"${opts.login ? '' : ' autofocus'}>
</div>
<div class="theme-form-row">
<label class="theme-form-label" for="password">Password</label>
<input tabindex="2" required id="password" name="password" type="password" class="theme-form-input" placeholder="password" autocomplete="current-password"${opts.login ? ' autofocus' : ''}>
</div>
${error}
<button tabindex="3" id="submit-login" type="submit" class="dex-btn theme-btn--primary">Login</button>
</form>
</main>
${opts.demoUsers?.length ? demoUsersPanel(opts.demoUsers) : ''}`;
  return page('dex', body, opts.demoUsers?.length ? FILL_SCRIPT : '');
}

function errorPage(title: string, message: string): string {
  return page(
    'dex',
    `<main class="theme-panel"><h2 class="theme-heading">${escapeHtml(title)}</h2><p>${escapeHtml(message)}</p></main>`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// The stand-in

interface TokenBody {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token?: string;
  id_token?: string;
}

/** dex refreshMode: Dex's RefreshToken row, keyed by the oidc-provider grant. */
interface Family {
  grantId: string;
  clientId: string;
  accountId: string;
  cur: string;
  obs: string | undefined;
  /** ms on the reuse clock */
  lastUsed: number;
  last: TokenBody;
}

type Ctx = KoaContextWithOIDC;

class DexStandIn implements Dex {
  readonly issuer: string;
  readonly port: number;
  readonly jwksUri: string;
  readonly users: DexUser[];
  readonly counts: DexCounts = { refreshGrants: 0, codeGrants: 0, tokenErrors: 0, revocations: 0 };

  private readonly prefix: string;
  private readonly issuerHost: string;
  private readonly idTokenTtl: number;
  private readonly refreshMode: 'strict' | 'dex';
  private readonly reuseInterval: number;
  private readonly onePerUserClient: boolean;
  private readonly revocation: boolean;
  private readonly showUsers: boolean;
  private readonly clients: DexClient[];
  private readonly store = new MapStore();
  private readonly cookieKeys = [randomBytes(32).toString('base64url')];
  private keys: SigningKey[];
  private current!: Provider;
  private handler!: ReturnType<Provider['callback']>;
  private server: Server | undefined;
  private down = false;
  private failures = { remaining: 0, status: 500 };
  private clockOffsetMs = 0;
  /** `${accountId}\n${clientId}` -> latest grant id with a refresh token */
  private readonly latestGrant = new Map<string, string>();
  private readonly families = new Map<string, Family>();
  private readonly familyOfToken = new Map<string, string>();
  private readonly locks = new Map<string, Promise<void>>();

  constructor(opts: DexOptions, port: number, key: SigningKey) {
    this.port = port;
    const host = opts.host ?? '127.0.0.1';
    let path = opts.issuerPath ?? '/';
    if (!path.startsWith('/')) path = `/${path}`;
    this.issuerHost = `${host}:${port}`;
    this.issuer = `http://${this.issuerHost}${path}`;
    this.prefix = path.endsWith('/') ? path.slice(0, -1) : path;
    this.jwksUri = `http://${this.issuerHost}${this.prefix}/keys`;
    this.users = opts.users ?? DEMO_USERS.map((u) => ({ ...u, groups: [...u.groups] }));
    this.idTokenTtl = opts.idTokenTtl ?? 86400;
    this.refreshMode = opts.refreshMode ?? 'strict';
    this.reuseInterval = opts.reuseInterval ?? 0;
    this.onePerUserClient = opts.oneRefreshTokenPerUserAndClient ?? true;
    this.revocation = opts.revocation ?? false;
    this.showUsers = opts.showUsers ?? false;
    this.clients = opts.clients.map((c) => ({ ...c, redirectUris: [...c.redirectUris] }));
    if (this.clients.length === 0) throw new Error('startDex: at least one client is required');
    this.keys = [key];
    this.build();
  }

  get privateJwk(): JWK {
    return this.signer().jwk;
  }

  get kid(): string {
    return this.signer().kid;
  }

  get provider(): Provider {
    return this.current;
  }

  subjectOf(user: Pick<DexUser, 'userId'>): string {
    return dexSubject(user.userId);
  }

  private signer(): SigningKey {
    const key = this.keys[0];
    if (!key) throw new Error('no signing key');
    return key;
  }

  private shownUsers(): readonly DexUser[] | undefined {
    return this.showUsers ? this.users : undefined;
  }

  private reuseNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  // ----- provider construction -----

  private findUserBySub(sub: string): DexUser | undefined {
    return this.users.find((u) => dexSubject(u.userId) === sub);
  }

  private build(): void {
    const store = this.store;
    const peers = new Set(['kubernetes', ...this.clients.map((c) => c.clientId)]);
    const ttl = this.idTokenTtl;
    const config: Configuration = {
      adapter: (name: string) => new MapAdapter(name, store),
      clients: this.clients.map((c) => ({
        client_id: c.clientId,
        client_secret: c.clientSecret,
        redirect_uris: c.redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
      responseTypes: ['code'],
      scopes: [
        'openid',
        'offline_access',
        'federated:id',
        ...[...peers].map((p) => AUDIENCE_SCOPE_PREFIX + p),
      ],
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name', 'preferred_username'],
        groups: ['groups'],
      },
      conformIdTokenClaims: false,
      findAccount: (_ctx, sub) => {
        const user = this.findUserBySub(sub);
        if (!user) return undefined;
        return {
          accountId: sub,
          claims: () => {
            const claims: { sub: string; [key: string]: unknown } = {
              sub,
              email: user.email,
              email_verified: user.emailVerified,
              name: user.name,
            };
            if (user.preferredUsername) claims['preferred_username'] = user.preferredUsername;
            if (user.groups.length > 0) claims['groups'] = [...user.groups];
            return claims;
          },
        };
      },
      jwks: { keys: this.keys.map((k) => k.jwk) as NonNullable<Configuration['jwks']>['keys'] },
      enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
      routes: { jwks: '/keys', userinfo: '/userinfo', introspection: '/token/introspect' },
      features: {
        devInteractions: { enabled: false },
        rpInitiatedLogout: { enabled: false },
        dPoP: { enabled: false },
        revocation: { enabled: this.revocation },
        introspection: { enabled: false },
        userinfo: { enabled: true },
      },
      interactions: { url: (_ctx, interaction) => `${this.prefix}/interaction/${interaction.uid}` },
      pkce: { required: () => false },
      rotateRefreshToken: true,
      ttl: {
        AccessToken: ttl,
        IdToken: ttl,
        AuthorizationCode: 1800,
        RefreshToken: 90 * 24 * 3600,
        Grant: 365 * 24 * 3600,
        Interaction: 24 * 3600,
        Session: 24 * 3600,
        ClientCredentials: 600,
        DeviceCode: 600,
        BackchannelAuthenticationRequest: 600,
      },
      cookies: { keys: this.cookieKeys },
      clientBasedCORS: () => false,
      renderError: (ctx, out) => {
        ctx.type = 'html';
        ctx.body = errorPage('Bad Request', `${out.error}: ${out.error_description ?? ''}`);
      },
    };
    const provider = new Provider(this.issuer, config);
    provider.on('server_error', (_ctx, err) => {
      console.error('dex stand-in: server_error', err);
    });
    provider.use((ctx, next) => this.koaMiddleware(ctx as unknown as Ctx, next));
    this.current = provider;
    this.handler = provider.callback();
  }

  // ----- Koa middleware (runs before oidc-provider's router; post-processes its responses) -----

  private async koaMiddleware(ctx: Ctx, next: () => Promise<unknown>): Promise<void> {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)$/.exec(ctx.path);
    if (m?.[1]) {
      await this.interaction(ctx, m[1]);
      return;
    }
    await next();
    this.dropSessionCookies(ctx);
    if (!Object.hasOwn(ctx, 'oidc')) return;
    const route = ctx.oidc.route;
    if (route === 'discovery' && ctx.body && typeof ctx.body === 'object') {
      const body = { ...(ctx.body as Record<string, unknown>) };
      delete body['authorization_response_iss_parameter_supported'];
      ctx.body = body;
    } else if (route === 'authorization' || route === 'resume') {
      this.stripIssParameter(ctx);
    } else if (route === 'token') {
      await this.afterToken(ctx);
    }
  }

  /** Dex keeps no login session; never let oidc-provider's `_session` cookie reach the browser. */
  private dropSessionCookies(ctx: Ctx): void {
    const header = ctx.res.getHeader('set-cookie');
    if (!Array.isArray(header)) return;
    const kept = header.filter((c) => !/^_session(\.|=)/.test(c));
    if (kept.length === header.length) return;
    if (kept.length) ctx.res.setHeader('set-cookie', kept);
    else ctx.res.removeHeader('set-cookie');
  }

  /** Dex sends no RFC 9207 `iss` in the authorization response. */
  private stripIssParameter(ctx: Ctx): void {
    const location = ctx.response.get('location');
    if (!location) return;
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      return;
    }
    if (!url.searchParams.has('iss')) return;
    if (!url.searchParams.has('code') && !url.searchParams.has('error')) return;
    url.searchParams.delete('iss');
    ctx.response.set('location', url.href);
  }

  private async interaction(ctx: Ctx, uid: string): Promise<void> {
    const action = `${this.prefix}/interaction/${uid}`;
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await this.current.interactionDetails(ctx.req, ctx.res);
    } catch {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = errorPage('Bad Request', 'Login session expired or not found. Start the login again.');
      return;
    }
    if (details.uid !== uid) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = errorPage('Bad Request', 'Login session mismatch. Start the login again.');
      return;
    }
    ctx.set('cache-control', 'no-store');
    if (ctx.method === 'GET') {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage(action, { demoUsers: this.shownUsers() });
      return;
    }
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      return;
    }
    const form = new URLSearchParams((await readBody(ctx.req)).toString('utf8'));
    const login = (form.get('login') ?? '').trim();
    const password = form.get('password') ?? '';
    const user = this.users.find((u) => u.login.toLowerCase() === login.toLowerCase());
    if (!user || user.password !== password) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(action, { login, error: true, demoUsers: this.shownUsers() });
      return;
    }
    const accountId = dexSubject(user.userId);
    const clientId = String(details.params['client_id'] ?? '');
    const scope = String(details.params['scope'] ?? 'openid');
    const grant = new this.current.Grant({ accountId, clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const returnTo = await this.current.interactionResult(
      ctx.req,
      ctx.res,
      { login: { accountId }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
    ctx.status = 303;
    ctx.set('location', returnTo);
    ctx.body = '';
  }

  private async afterToken(ctx: Ctx): Promise<void> {
    const params = (ctx.oidc.params ?? {}) as Record<string, unknown>;
    const grantType = params['grant_type'];
    const clientId = ctx.oidc.client?.clientId ?? '';

    if (ctx.status >= 400) {
      if (
        this.refreshMode === 'dex' &&
        grantType === 'refresh_token' &&
        ctx.body &&
        typeof ctx.body === 'object'
      ) {
        const err = (ctx.body as { error?: string }).error;
        if (err === 'invalid_grant') {
          ctx.status = 400;
          ctx.body = { error: 'invalid_request', error_description: CLAIMED };
        } else if (err === 'invalid_scope') {
          ctx.status = 400;
          ctx.body = {
            error: 'invalid_request',
            error_description: 'Requested scopes contain unauthorized scope(s).',
          };
        }
      }
      ctx.remove('www-authenticate');
      return;
    }
    if (ctx.status !== 200 || !ctx.body || typeof ctx.body !== 'object') return;

    const raw = ctx.body as Record<string, unknown>;
    const source =
      grantType === 'refresh_token' ? ctx.oidc.entities.RefreshToken : ctx.oidc.entities.AuthorizationCode;
    const scope = typeof source?.scope === 'string' ? source.scope : '';
    const accessToken = String(raw['access_token'] ?? '');
    const code = grantType === 'authorization_code' ? String(params['code'] ?? '') : undefined;
    const body: TokenBody = { access_token: accessToken, token_type: 'bearer', expires_in: this.idTokenTtl };
    if (typeof raw['refresh_token'] === 'string') body.refresh_token = raw['refresh_token'];
    if (typeof raw['id_token'] === 'string') {
      const idToken = await this.dexifyIdToken(raw['id_token'], { clientId, scope, accessToken, code });
      body.id_token = idToken;
      const exp = decodeJwt(idToken).exp;
      if (typeof exp === 'number') body.expires_in = Math.max(0, exp - Math.floor(Date.now() / 1000));
    }
    ctx.body = body;

    const grantId = source?.grantId;
    const accountId = source?.accountId;
    if (!grantId || !accountId) return;

    if (grantType === 'authorization_code' && body.refresh_token) {
      const key = `${accountId}\n${clientId}`;
      const previous = this.latestGrant.get(key);
      if (this.onePerUserClient && previous && previous !== grantId) await this.killGrant(previous);
      this.latestGrant.set(key, grantId);
      if (this.refreshMode === 'dex') {
        this.families.set(grantId, {
          grantId,
          clientId,
          accountId,
          cur: body.refresh_token,
          obs: undefined,
          lastUsed: this.reuseNow(),
          last: body,
        });
        this.familyOfToken.set(body.refresh_token, grantId);
      }
    } else if (grantType === 'refresh_token' && this.refreshMode === 'dex' && body.refresh_token) {
      const fam = this.families.get(grantId);
      const presented = params['refresh_token'];
      if (fam && typeof presented === 'string' && body.refresh_token !== fam.cur) {
        if (fam.obs) this.familyOfToken.delete(fam.obs);
        fam.obs = presented;
        fam.cur = body.refresh_token;
        fam.lastUsed = this.reuseNow();
        this.familyOfToken.set(fam.cur, grantId);
      }
      if (fam) fam.last = body;
    }
  }

  private async killGrant(grantId: string): Promise<void> {
    const grant = await this.current.Grant.find(grantId);
    await grant?.destroy();
    this.store.revokeGrant(grantId);
    const fam = this.families.get(grantId);
    if (fam) {
      this.familyOfToken.delete(fam.cur);
      if (fam.obs) this.familyOfToken.delete(fam.obs);
      this.families.delete(grantId);
    }
  }

  /** Re-sign oidc-provider's ID token in Dex's shape. */
  private async dexifyIdToken(
    idToken: string,
    info: { clientId: string; scope: string; accessToken: string; code: string | undefined },
  ): Promise<string> {
    const payload: Record<string, unknown> = { ...decodeJwt(idToken) };
    for (const claim of ['auth_time', 'sid', 'acr', 'amr', 'jti', 'at_hash', 'c_hash', 's_hash', 'azp']) {
      delete payload[claim];
    }
    const peers = info.scope
      .split(' ')
      .filter((s) => s.startsWith(AUDIENCE_SCOPE_PREFIX))
      .map((s) => s.slice(AUDIENCE_SCOPE_PREFIX.length));
    if (peers.length > 0) {
      const aud = [...new Set(peers)];
      if (!aud.includes(info.clientId)) aud.push(info.clientId);
      payload['aud'] = aud.length === 1 ? aud[0] : aud;
      if (aud.length > 1) payload['azp'] = info.clientId;
    } else {
      payload['aud'] = info.clientId;
    }
    if (info.accessToken) payload['at_hash'] = halfHash(info.accessToken);
    if (info.code) payload['c_hash'] = halfHash(info.code);
    return this.sign(payload);
  }

  private async sign(payload: Record<string, unknown>): Promise<string> {
    const signer = this.signer();
    return new SignJWT(payload as JWTPayload)
      .setProtectedHeader({ alg: 'RS256', kid: signer.kid })
      .sign(signer.key);
  }

  /** A fresh ID token from the stored one (Dex mints from stored claims without calling the connector). */
  private async reissue(idToken: string): Promise<string> {
    const payload: Record<string, unknown> = { ...decodeJwt(idToken) };
    const now = Math.floor(Date.now() / 1000);
    payload['iat'] = now;
    payload['exp'] = now + this.idTokenTtl;
    delete payload['c_hash'];
    return this.sign(payload);
  }

  // ----- HTTP layer -----

  private async onRequest(
    req: IncomingMessage & { originalUrl?: string },
    res: ServerResponse,
  ): Promise<void> {
    if (this.down) {
      req.socket.destroy();
      return;
    }
    const original = req.url ?? '/';
    const qIndex = original.indexOf('?');
    const pathname = qIndex === -1 ? original : original.slice(0, qIndex);
    if (this.prefix) {
      if (pathname !== this.prefix && !pathname.startsWith(`${this.prefix}/`)) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('404 page not found\n');
        return;
      }
      req.url = original.slice(this.prefix.length) || '/';
      if (req.url.startsWith('?')) req.url = `/${req.url}`;
    }
    // Endpoints in discovery and redirects are derived from the issuer, as in Dex.
    req.headers.host = this.issuerHost;
    const path = pathname.slice(this.prefix.length) || '/';

    if (req.method === 'GET' && path === '/auth') {
      req.url = this.rewriteAuthorizationUrl(req.url ?? '/');
    }
    if (req.method === 'GET' && (path === '/auth' || path.startsWith('/auth/'))) {
      // Dex has no SSO session: every authorization request (and its resume) starts from scratch, even in
      // the same browser, as if oidc-provider's `_session` cookie had never been set.
      const cookie = req.headers.cookie;
      if (cookie) {
        const kept = cookie
          .split(';')
          .map((c) => c.trim())
          .filter((c) => c && !/^_session(\.|=)/.test(c));
        if (kept.length) req.headers.cookie = kept.join('; ');
        else delete req.headers.cookie;
      }
    }
    // oidc-provider derives its mount path from originalUrl minus url (like an Express mount).
    if (this.prefix) req.originalUrl = `${this.prefix}${req.url ?? '/'}`;
    if (req.method === 'POST' && path === '/token') {
      await this.onToken(req, res);
      return;
    }
    if (req.method === 'POST' && path === '/token/revocation') this.counts.revocations++;
    await this.handler(req, res);
  }

  /**
   * Dex has no SSO (every /auth shows the login form) and issues refresh tokens for `offline_access`
   * without `prompt=consent`; oidc-provider needs `prompt=login consent` for the same behaviour.
   */
  private rewriteAuthorizationUrl(url: string): string {
    const u = new URL(url, 'http://x');
    const prompts = new Set((u.searchParams.get('prompt') ?? '').split(' ').filter(Boolean));
    if (prompts.has('none')) return url;
    prompts.add('login');
    const scopes = (u.searchParams.get('scope') ?? '').split(' ');
    if (scopes.includes('offline_access')) prompts.add('consent');
    u.searchParams.set('prompt', [...prompts].join(' '));
    return `${u.pathname}${u.search}`;
  }

  private authenticateClient(req: IncomingMessage, form: URLSearchParams): DexClient | undefined {
    let id: string | null = null;
    let secret: string | null = null;
    const auth = req.headers.authorization;
    if (auth && /^basic /i.test(auth)) {
      const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i !== -1) {
        id = formDecode(decoded.slice(0, i));
        secret = formDecode(decoded.slice(i + 1));
      }
    }
    if (id === null) {
      id = form.get('client_id');
      secret = form.get('client_secret') ?? '';
    }
    const client = this.clients.find((c) => c.clientId === id);
    if (!client || client.clientSecret !== secret) return undefined;
    return client;
  }

  private async onToken(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.on('finish', () => {
      if (res.statusCode >= 400) this.counts.tokenErrors++;
    });
    let raw: Buffer;
    try {
      raw = await readBody(req);
    } catch {
      sendJson(res, 400, { error: 'invalid_request', error_description: 'Failed to read request body.' });
      return;
    }
    const form = new URLSearchParams(raw.toString('utf8'));
    const grantType = form.get('grant_type');
    if (grantType === 'refresh_token') this.counts.refreshGrants++;
    else if (grantType === 'authorization_code') this.counts.codeGrants++;

    const client = this.authenticateClient(req, form);
    if (!client) {
      sendJson(res, 401, { error: 'invalid_client', error_description: 'Invalid client credentials.' });
      return;
    }
    form.delete('client_id');
    form.delete('client_secret');

    if (grantType === 'refresh_token') {
      if (this.failures.remaining > 0) {
        this.failures.remaining--;
        const status = this.failures.status;
        if (status === 500) sendJson(res, 500, { error: 'invalid_request' });
        else if (status === 401)
          sendJson(res, 401, { error: 'invalid_client', error_description: 'Invalid client credentials.' });
        else if (status >= 400 && status < 500)
          sendJson(res, status, { error: 'invalid_request', error_description: CLAIMED });
        else sendJson(res, status, { error: 'server_error' });
        return;
      }
      if (this.refreshMode === 'dex') {
        const handled = await this.dexRefresh(form, client, res);
        if (handled) return;
      }
    }

    const body = Buffer.from(form.toString(), 'utf8');
    const headers: IncomingHttpHeaders = {
      ...req.headers,
      host: this.issuerHost,
      authorization: `Basic ${Buffer.from(`${formEncode(client.clientId)}:${formEncode(client.clientSecret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': String(body.length),
    };
    delete headers['transfer-encoding'];
    const copy = new IncomingMessage(new Socket()) as IncomingMessage & { originalUrl?: string };
    copy.method = req.method;
    copy.url = req.url;
    copy.originalUrl = (req as IncomingMessage & { originalUrl?: string }).originalUrl;
    copy.headers = headers;
    copy.httpVersion = req.httpVersion;
    copy.httpVersionMajor = req.httpVersionMajor;
    copy.httpVersionMinor = req.httpVersionMinor;
    copy.push(body);
    copy.push(null);
    copy.complete = true;
    await this.handler(copy, res);
  }

  private async lock(key: string): Promise<() => void> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chained = previous.then(() => mine);
    this.locks.set(key, chained);
    await previous;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      release();
      if (this.locks.get(key) === chained) this.locks.delete(key);
    };
  }

  /**
   * Dex's refresh algorithm (getRefreshTokenFromStorage + updateRefreshToken), on top of oidc-provider.
   * Returns true when the response was sent here; false to let oidc-provider rotate the token.
   */
  private async dexRefresh(form: URLSearchParams, client: DexClient, res: ServerResponse): Promise<boolean> {
    const presented = form.get('refresh_token');
    if (!presented) {
      sendJson(res, 400, {
        error: 'invalid_request',
        error_description: 'No refresh token is found in request.',
      });
      return true;
    }
    const grantId = this.familyOfToken.get(presented);
    if (!grantId) {
      sendJson(res, 400, { error: 'invalid_request', error_description: CLAIMED });
      return true;
    }
    const release = await this.lock(grantId);
    res.once('close', release);
    const fam = this.families.get(grantId);
    if (!fam) {
      release();
      sendJson(res, 400, { error: 'invalid_request', error_description: CLAIMED });
      return true;
    }
    if (fam.clientId !== client.clientId) {
      release();
      sendJson(res, 400, { error: 'invalid_grant', error_description: CLAIMED });
      return true;
    }
    const within = this.reuseInterval > 0 && this.reuseNow() < fam.lastUsed + this.reuseInterval * 1000;
    if (presented !== fam.cur && !(within && fam.obs !== undefined && presented === fam.obs)) {
      release();
      sendJson(res, 400, { error: 'invalid_request', error_description: CLAIMED });
      return true;
    }
    if (within) {
      // Previous token within the window gets the current one; the current one comes back unchanged.
      const body: TokenBody = { ...fam.last, refresh_token: fam.cur, expires_in: this.idTokenTtl };
      if (fam.last.id_token) body.id_token = await this.reissue(fam.last.id_token);
      release();
      sendJson(res, 200, body);
      return true;
    }
    if (!this.findUserBySub(fam.accountId)) {
      // The connector's Refresh fails ("user not found") -> Dex answers 500 {"error":"invalid_request"}.
      release();
      sendJson(res, 500, { error: 'invalid_request' });
      return true;
    }
    return false;
  }

  // ----- lifecycle and test controls -----

  async start(): Promise<void> {
    if (this.server?.listening) return;
    const server = createServer((req, res) => {
      this.onRequest(req, res).catch((err: unknown) => {
        console.error('dex stand-in: request failed', err);
        if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  setDown(down: boolean): void {
    this.down = down;
  }

  failNextRefreshes(n: number, status: number): void {
    this.failures = { remaining: n, status };
  }

  advanceReuseClock(seconds: number): void {
    this.clockOffsetMs += seconds * 1000;
  }

  async rotateKeys(): Promise<void> {
    const key = await newSigningKey();
    this.keys = [key, ...this.keys];
    this.build();
  }

  async mintIdToken(claims: Record<string, unknown>, opts: MintOptions = {}): Promise<string> {
    const alg = opts.alg ?? 'RS256';
    const now = Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {
      iss: this.issuer,
      aud: this.clients[0]?.clientId,
      iat: now,
      exp: now + (opts.expiresIn ?? this.idTokenTtl),
      ...claims,
    };
    for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
    let key: CryptoKey | KeyObject | Uint8Array;
    if (opts.key === undefined) {
      key =
        alg === 'RS256' ? this.signer().key : (await generateKeyPair(alg, { extractable: true })).privateKey;
    } else if (opts.key instanceof Uint8Array || !('kty' in opts.key)) {
      key = opts.key as CryptoKey | KeyObject | Uint8Array;
    } else {
      key = await importJWK(opts.key, alg);
    }
    return new SignJWT(payload as JWTPayload)
      .setProtectedHeader({ alg, kid: opts.kid ?? this.signer().kid })
      .sign(key);
  }

  async close(): Promise<void> {
    await this.stop();
  }
}

/** Start a Dex stand-in listening on 127.0.0.1. */
export async function startDex(opts: DexOptions): Promise<Dex> {
  const port = opts.port ?? (await freePort());
  const dex = new DexStandIn(opts, port, await newSigningKey());
  await dex.start();
  return dex;
}
