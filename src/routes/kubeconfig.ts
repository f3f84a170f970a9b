import type { IncomingMessage } from 'node:http';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { stringify } from 'yaml';
import { AUDIENCE_SCOPE_PREFIX, type KubeCluster } from '../config.ts';
import type { Deps } from '../deps.ts';
import { AppError } from '../errors.ts';
import { isNavigation } from '../forward/navigation.ts';
import { type OriginalRequest, readOriginalRequest } from '../forward/original.ts';
import { CONFLICT } from '../http/cookies.ts';
import type { Reply } from '../http/reply.ts';
import { html, join, type SafeHtml } from '../http/views.ts';
import type { SessionRecord } from '../session/sessions.ts';
import { startLogin } from './login.ts';
import { replySender } from './send.ts';

/**
 * `/kubeconfig` (DESIGN §7): for the logged-in user, per configured cluster, (a) a kubeconfig that
 * runs the kubelogin exec plugin (`kubectl oidc-login get-token`: issuer, client id, scopes incl.
 * the cross-client audience) and (b) one with the current ID token, marked with its expiry; each
 * to copy or download. Never the refresh token, never a confidential client secret.
 */

export type KubeconfigVariant = 'exec' | 'token';

export interface KubeconfigContext {
  readonly issuerUrl: string;
  /** The user as the API server names them, for comments only. */
  readonly user: string;
  /** Only for the token variant. */
  readonly idToken?: string;
  readonly tokenExp?: number;
  readonly now: number;
}

const EXEC_API_VERSION = 'client.authentication.k8s.io/v1';
const INSTALL_HINT =
  'kubelogin (the kubectl oidc-login plugin) is not installed. Install it with one of:\n' +
  '  kubectl krew install oidc-login\n' +
  '  brew install kubelogin\n' +
  '  choco install kubelogin\n' +
  'See https://github.com/int128/kubelogin';

/** kubelogin's arguments for one cluster. The client secret only for a client declared public. */
export function kubeloginArgs(cluster: KubeCluster, issuerUrl: string): string[] {
  const scopes = [...cluster.extraScopes];
  if (cluster.audience !== cluster.clientId) scopes.push(`${AUDIENCE_SCOPE_PREFIX}${cluster.audience}`);
  return [
    'oidc-login',
    'get-token',
    `--oidc-issuer-url=${issuerUrl}`,
    `--oidc-client-id=${cluster.clientId}`,
    ...(cluster.clientSecret ? [`--oidc-client-secret=${cluster.clientSecret}`] : []),
    ...[...new Set(scopes)].filter((s) => s !== 'openid').map((s) => `--oidc-extra-scope=${s}`),
  ];
}

const oneLine = (text: string): string => text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, ' ');

function contextName(cluster: KubeCluster, variant: KubeconfigVariant): string {
  return variant === 'exec' ? cluster.name : `${cluster.name}-token`;
}

function userName(cluster: KubeCluster, variant: KubeconfigVariant): string {
  return variant === 'exec' ? `oidc@${cluster.name}` : `token@${cluster.name}`;
}

/** A whole kubeconfig (YAML) for the given clusters; the first becomes the current context. */
export function kubeconfigYaml(
  clusters: readonly KubeCluster[],
  variant: KubeconfigVariant,
  ctx: KubeconfigContext,
): string {
  if (variant === 'token' && !ctx.idToken) throw new Error('the token variant needs an ID token');
  const names = clusters.map((c) => c.name).join(', ');
  const header =
    variant === 'exec'
      ? [
          `kubeconfig for ${names}: kubectl runs kubelogin (kubectl oidc-login), which signs you in`,
          'through Dex in your browser and renews the token itself. It holds no token and no secret.',
          'Install kubelogin: kubectl krew install oidc-login | brew install kubelogin | choco install kubelogin',
        ]
      : [
          `kubeconfig for ${names} with the ID token of ${ctx.user}.`,
          `The token EXPIRES at ${new Date(ctx.tokenExp ?? 0).toISOString()} and is not renewed: download it again then,`,
          'or use the kubelogin variant. Keep this file private: whoever holds it acts as you until then.',
        ];
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    preferences: {},
    clusters: clusters.map((c) => ({
      name: c.name,
      cluster: { server: c.server, ...(c.caData ? { 'certificate-authority-data': c.caData } : {}) },
    })),
    users: clusters.map((c) => ({
      name: userName(c, variant),
      user:
        variant === 'exec'
          ? {
              exec: {
                apiVersion: EXEC_API_VERSION,
                command: 'kubectl',
                args: kubeloginArgs(c, ctx.issuerUrl),
                interactiveMode: 'Never',
                provideClusterInfo: false,
                installHint: INSTALL_HINT,
              },
            }
          : { token: ctx.idToken },
    })),
    contexts: clusters.map((c) => ({
      name: contextName(c, variant),
      context: { cluster: c.name, user: userName(c, variant) },
    })),
    'current-context': clusters[0] ? contextName(clusters[0], variant) : '',
  };
  const comments = header.map((line) => `# ${oneLine(line)}\n`).join('');
  return comments + stringify(doc, { lineWidth: 0 });
}

/** A file name safe in a Content-Disposition header and on every OS. */
export function downloadName(cluster: KubeCluster | undefined, variant: KubeconfigVariant): string {
  const base = cluster ? cluster.name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) : 'all-clusters';
  return `kubeconfig-${base}${variant === 'token' ? '-token' : ''}.yaml`;
}

function audiencesOf(idToken: string): string[] {
  try {
    const payload = JSON.parse(Buffer.from(idToken.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      aud?: unknown;
    };
    const aud = payload.aud;
    return typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.map(String) : [];
  } catch {
    return [];
  }
}

/** "a, b, c and 147 more": a long group list must not flood the page. */
function shortList(items: readonly string[], max: number): string {
  if (items.length === 0) return 'none';
  const shown = items.slice(0, max).join(', ');
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}

function inWords(ms: number): string {
  const minutes = Math.round(ms / 60_000);
  if (ms <= 0) return 'already expired';
  if (minutes < 1) return 'in less than a minute';
  if (minutes < 120) return `in ${minutes} minute${minutes === 1 ? '' : 's'}`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `in ${hours} hours` : `in ${Math.round(hours / 24)} days`;
}

type Access =
  | { readonly kind: 'ok'; readonly record: SessionRecord; readonly cookies: string[] }
  | { readonly kind: 'login'; readonly reply: Reply };

/**
 * Whether the request is a top-level browser navigation, the only kind of request that gets a
 * kubeconfig holding the user's token. Browsers send Sec-Fetch-* on every request to a secure
 * origin, and a script cannot set them: `fetch()` and XHR say `cors`/`same-origin`/`no-cors`,
 * frames say `iframe`. A request without them is not a modern browser's (or is over plain HTTP):
 * it is refused too; a command-line client that holds the session cookie may send
 * `Sec-Fetch-Mode: navigate` itself (README "Kubeconfig page").
 */
export function isTopLevelNavigation(headers: IncomingMessage['headers']): boolean {
  if (headers['x-requested-with'] !== undefined) return false;
  const mode = headers['sec-fetch-mode'];
  const dest = headers['sec-fetch-dest'];
  // Chromium sends `Sec-Fetch-Dest: empty` for a click on a download link; no script can send `navigate`.
  if (mode === 'navigate') return dest === undefined || dest === 'document' || dest === 'empty';
  return mode === undefined && dest === 'document';
}

const TOKEN_NEEDS_NAVIGATION =
  'The token kubeconfig is only handed to a page opened in the browser (a top-level navigation), never to a script. Open the link in your browser, or use the kubelogin variant.';

/** The policy decides who may see their kubeconfig, as for any other page (DESIGN §6). */
function admit(deps: Deps, record: SessionRecord, original: OriginalRequest): void {
  const decision = deps.authorizer.decide(record.identity, original);
  if (decision.allowed) return;
  deps.log.info(
    { user: record.identity.user, path: original.path, code: decision.code, source: decision.source },
    'kubeconfig access denied',
  );
  throw new AppError(decision.code, decision.reason);
}

/** The session behind the request, or a login (navigations) / 401 (everything else). */
async function requireSession(
  deps: Deps,
  req: IncomingMessage,
  original: OriginalRequest,
  returnTo: string,
): Promise<Access> {
  const clear: string[] = [];
  const cookie = deps.cookies.readSession(req.headers.cookie);
  if (cookie === CONFLICT) throw deps.cookies.conflict(original);
  if (cookie) {
    const session = await deps.sessions.resolve(cookie, original.host);
    if (session.kind === 'valid') {
      const cookies = session.setCookie
        ? [
            deps.cookies.set(
              deps.cookies.session,
              session.setCookie,
              (session.sessionEnd - deps.clock.now()) / 1000,
            ),
          ]
        : [];
      return { kind: 'ok', record: session.record, cookies };
    }
    clear.push(...deps.cookies.clear(deps.cookies.session));
  }
  if (isNavigation(req.method ?? 'GET', req.headers)) {
    const login = await startLogin(deps, original, returnTo, req.headers.cookie);
    return { kind: 'login', reply: { ...login, cookies: [...clear, ...(login.cookies ?? [])] } };
  }
  throw new AppError('unauthenticated', 'Sign-in required.', {
    headers: { 'WWW-Authenticate': 'Bearer realm="dex-forward-auth"' },
    cookies: clear,
  });
}

function downloadHref(cluster: KubeCluster | undefined, variant: KubeconfigVariant): string {
  const query = new URLSearchParams();
  if (cluster) query.set('cluster', cluster.name);
  query.set('variant', variant);
  return `/kubeconfig/download?${query.toString()}`;
}

function variantBlock(
  id: string,
  cluster: KubeCluster,
  variant: KubeconfigVariant,
  yamlText: string,
  intro: SafeHtml,
): SafeHtml {
  const file = downloadName(cluster, variant);
  const what = variant === 'exec' ? 'the kubelogin kubeconfig' : 'the token kubeconfig';
  return html`<div>
${intro}
<p class="actions"><a class="button" href="${downloadHref(cluster, variant)}" download="${file}">Download ${file}</a>
<button type="button" class="button secondary" data-copy="${id}" aria-label="Copy ${what} for ${cluster.name}" hidden>Copy</button></p>
<pre tabindex="0" aria-label="${what} for ${cluster.name}"><code id="${id}">${yamlText}</code></pre>
</div>`;
}

function tokenWithheld(cluster: KubeCluster): SafeHtml {
  return html`<div>
<h3>Quick: use your current token</h3>
<div class="note" role="note"><p>${TOKEN_NEEDS_NAVIGATION}</p></div>
<p class="actions"><a class="button" href="${downloadHref(cluster, 'token')}">Open the token kubeconfig for ${cluster.name}</a></p>
</div>`;
}

function clusterSection(
  deps: Deps,
  cluster: KubeCluster,
  index: number,
  ctx: KubeconfigContext,
  withToken: boolean,
): SafeHtml {
  const exp = ctx.tokenExp ?? ctx.now;
  const audienceScope = cluster.audience !== cluster.clientId;
  const sharedClient = cluster.clientId === deps.config.clientId && !cluster.clientSecret;
  const tokenAudiences = ctx.idToken ? audiencesOf(ctx.idToken) : [];
  const tokenFits = tokenAudiences.includes(cluster.audience);
  const execIntro = html`<h3>Recommended: sign in with kubelogin</h3>
<p>kubectl runs <a href="https://github.com/int128/kubelogin">kubelogin</a>, which signs you in through Dex in your browser and renews the token by itself. The file holds no token and no secret, so it can be kept and shared.</p>
${
  audienceScope
    ? html`<p class="meta">Client <code>${cluster.clientId}</code>, asking Dex for the API server's audience <code>${cluster.audience}</code>.</p>`
    : html`<p class="meta">Client <code>${cluster.clientId}</code>.</p>`
}
${
  sharedClient
    ? html`<div class="note" role="note"><p>This cluster has no kubectl client of its own configured, so kubelogin uses <code>${cluster.clientId}</code>, the confidential client of this sign-in service, whose secret is never put in a kubeconfig. Ask your platform team for a public Dex client for kubectl (<code>KUBE_CLUSTERS</code> <code>clientId</code>) with <code>http://localhost:8000</code> as a redirect URI.</p></div>`
    : html``
}`;
  const tokenIntro = html`<h3>Quick: use your current token</h3>
<p>Works right away with plain kubectl, until <time datetime="${new Date(exp).toISOString()}">${new Date(exp).toUTCString()}</time> (<strong>${inWords(exp - ctx.now)}</strong>). It is not renewed: come back for a new one, or use kubelogin. Keep it private.</p>
${
  tokenFits
    ? html``
    : html`<div class="note" role="note"><p>This token was issued for <code>${tokenAudiences.join(', ') || 'an unknown audience'}</code>, but the API server expects <code>${cluster.audience}</code>: it will refuse the token. Ask your platform team to add <code>${AUDIENCE_SCOPE_PREFIX}${cluster.audience}</code> to <code>OIDC_SCOPES</code>, or use kubelogin.</p></div>`
}`;
  return html`<section class="cluster" aria-labelledby="cluster-${index}">
<h2 id="cluster-${index}">Cluster <code>${cluster.name}</code></h2>
<p class="meta">API server <code>${cluster.server}</code>${cluster.caData ? '' : ' · no CA configured: the system trust store is used'}</p>
<div class="variants">
${variantBlock(`exec-${index}`, cluster, 'exec', kubeconfigYaml([cluster], 'exec', ctx), execIntro)}
${withToken ? variantBlock(`token-${index}`, cluster, 'token', kubeconfigYaml([cluster], 'token', ctx), tokenIntro) : tokenWithheld(cluster)}
</div>
</section>`;
}

/** What a kubeconfig of this session says: the issuer, the user, the current ID token. */
function kubeconfigContext(deps: Deps, record: SessionRecord): KubeconfigContext {
  return {
    issuerUrl: deps.config.issuerUrl,
    user: record.identity.user || record.identity.sub,
    idToken: record.idToken,
    tokenExp: record.tokenExp,
    now: deps.clock.now(),
  };
}

function page(deps: Deps, record: SessionRecord, cookies: string[], withToken: boolean): Reply {
  const clusters = deps.config.kubeClusters;
  const { identity } = record;
  const ctx = kubeconfigContext(deps, record);
  const first = clusters[0];
  const exampleFile = downloadName(first, 'exec');
  const sections =
    clusters.length === 0
      ? html`<div class="note" role="note"><p>No clusters are configured yet. Your platform team lists them in the <code>KUBE_CLUSTERS</code> setting (name, API server URL, CA, kubectl client id).</p></div>`
      : join(clusters.map((c, i) => clusterSection(deps, c, i, ctx, withToken)));
  const all =
    clusters.length > 1
      ? html`<p class="actions"><a class="button secondary" href="${downloadHref(undefined, 'exec')}" download="${downloadName(undefined, 'exec')}">Download all clusters (kubelogin)</a>
<a class="button secondary" href="${downloadHref(undefined, 'token')}" download="${downloadName(undefined, 'token')}">Download all clusters (token)</a></p>`
      : html``;
  return {
    status: 200,
    cookies,
    // The page holds the ID token: an opaque origin, so a dashboard's script on this host cannot
    // read it through a popup, even where the dashboard's COOP puts both in one browsing context group.
    sandbox: true,
    page: {
      view: 'kubeconfig',
      title: 'Kubeconfig',
      data: {
        user: ctx.user,
        groupCount: String(identity.groups.length),
        groups: shortList(identity.groups, 12),
        issuer: deps.config.issuerUrl,
        expires: new Date(record.tokenExp).toUTCString(),
        expiresIso: new Date(record.tokenExp).toISOString(),
        expiresIn: inWords(record.tokenExp - ctx.now),
        clusters: sections,
        all,
        file: exampleFile,
        signOutUrl: '/oauth2/sign_out',
      },
    },
    json: {
      user: ctx.user,
      groups: identity.groups,
      tokenExpiresAt: new Date(record.tokenExp).toISOString(),
      clusters: clusters.map((c) => ({
        name: c.name,
        server: c.server,
        downloads: { exec: downloadHref(c, 'exec'), token: downloadHref(c, 'token') },
      })),
    },
  };
}

/** GET /kubeconfig (page) and GET /kubeconfig/download?cluster=&variant=exec|token (YAML file). */
export function kubeconfigRoutes(deps: Deps): Router {
  const router = express.Router();
  const send = replySender(deps);

  router.get('/kubeconfig', (req: Request, res: Response, next: NextFunction) => {
    const run = async (): Promise<Reply> => {
      const original = readOriginalRequest(req, deps.trust);
      const access = await requireSession(deps, req, original, original.url);
      if (access.kind === 'login') return access.reply;
      admit(deps, access.record, original);
      return page(deps, access.record, access.cookies, isTopLevelNavigation(req.headers));
    };
    run().then((reply) => send(req, res, reply), next);
  });

  router.get('/kubeconfig/download', (req: Request, res: Response, next: NextFunction) => {
    download(deps, send, req, res).catch(next);
  });
  return router;
}

/** The download's query: the variant, and the one cluster named (else all of them). */
function downloadQuery(deps: Deps, req: Request) {
  const variant = req.query['variant'] ?? 'exec';
  if (variant !== 'exec' && variant !== 'token') {
    throw new AppError('bad_request', 'variant must be exec or token.');
  }
  const name = req.query['cluster'];
  if (name !== undefined && typeof name !== 'string') {
    throw new AppError('bad_request', 'Give one cluster name.');
  }
  const cluster = name === undefined ? undefined : deps.config.kubeClusters.find((c) => c.name === name);
  if (name !== undefined && !cluster) throw new AppError('not_found', 'There is no such cluster.');
  const clusters = cluster ? [cluster] : deps.config.kubeClusters;
  if (clusters.length === 0) throw new AppError('not_found', 'No clusters are configured.');
  return { variant, cluster, clusters } as const;
}

/** GET /kubeconfig/download: the YAML file, for a signed-in user (a login otherwise). */
async function download(
  deps: Deps,
  send: ReturnType<typeof replySender>,
  req: Request,
  res: Response,
): Promise<void> {
  const original = readOriginalRequest(req, deps.trust);
  const { variant, cluster, clusters } = downloadQuery(deps, req);
  const access = await requireSession(deps, req, original, `${original.proto}://${original.host}/kubeconfig`);
  if (access.kind === 'login') return send(req, res, access.reply);
  const { record } = access;
  admit(deps, record, original);
  if (variant === 'token' && !isTopLevelNavigation(req.headers)) {
    throw new AppError('forbidden', TOKEN_NEEDS_NAVIGATION);
  }
  const body = kubeconfigYaml(clusters, variant, kubeconfigContext(deps, record));
  res.statusCode = 200;
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'application/yaml; charset=utf-8');
  res.setHeader('Content-Disposition', `attachment; filename="${downloadName(cluster, variant)}"`);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  if (access.cookies.length > 0) res.setHeader('Set-Cookie', access.cookies);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(req.method === 'HEAD' ? undefined : body);
}
