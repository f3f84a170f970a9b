import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { dexSubject } from './dexShape.ts';
import { errorPage, loginPage } from './pages.ts';
import type { DexUser } from './users.ts';
import { readBody } from './wire.ts';

/** The login interaction: Dex's password form (`login`, `password`; 401 and the form again when wrong). */

export interface InteractionHost {
  readonly prefix: string;
  provider(): Provider;
  readonly users: readonly DexUser[];
  /** Listed under the form (the demo), or undefined. */
  readonly shownUsers: readonly DexUser[] | undefined;
}

type Ctx = KoaContextWithOIDC;

function badRequest(ctx: Ctx, message: string): void {
  ctx.status = 400;
  ctx.type = 'html';
  ctx.body = errorPage('Bad Request', message);
}

export async function interaction(ctx: Ctx, uid: string, host: InteractionHost): Promise<void> {
  const action = `${host.prefix}/interaction/${uid}`;
  let details: Awaited<ReturnType<Provider['interactionDetails']>>;
  try {
    details = await host.provider().interactionDetails(ctx.req, ctx.res);
  } catch {
    badRequest(ctx, 'Login session expired or not found. Start the login again.');
    return;
  }
  if (details.uid !== uid) {
    badRequest(ctx, 'Login session mismatch. Start the login again.');
    return;
  }
  ctx.set('cache-control', 'no-store');
  if (ctx.method === 'GET') {
    ctx.status = 200;
    ctx.type = 'html';
    ctx.body = loginPage(action, { demoUsers: host.shownUsers });
    return;
  }
  if (ctx.method !== 'POST') {
    ctx.status = 405;
    return;
  }
  await submit(ctx, action, details.params, host);
}

async function submit(ctx: Ctx, action: string, params: Record<string, unknown>, host: InteractionHost) {
  const form = new URLSearchParams((await readBody(ctx.req)).toString('utf8'));
  const login = (form.get('login') ?? '').trim();
  const password = form.get('password') ?? '';
  const user = host.users.find((u) => u.login.toLowerCase() === login.toLowerCase());
  if (!user || user.password !== password) {
    ctx.status = 401;
    ctx.type = 'html';
    ctx.body = loginPage(action, { login, error: true, demoUsers: host.shownUsers });
    return;
  }
  const provider = host.provider();
  const accountId = dexSubject(user.userId);
  const clientId = String(params['client_id'] ?? '');
  const scope = String(params['scope'] ?? 'openid');
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const returnTo = await provider.interactionResult(
    ctx.req,
    ctx.res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
  ctx.status = 303;
  ctx.set('location', returnTo);
  ctx.body = '';
}
