/**
 * A Dex stand-in for tests and the demo, built on panva's `oidc-provider` (v9), in test/support/dex/:
 *
 * - users.ts        the demo users (DEMO_USERS)
 * - types.ts        the stand-in's options and its public shape (Dex, DexOptions, DexClient …)
 * - profiles.ts     how far it departs from Dex: the provider profiles of the interop matrix
 * - provider.ts     provider setup: the oidc-provider configuration
 * - standIn.ts      the HTTP layer, the per-profile reshaping of answers, and the admin API
 * - tokenEndpoint.ts, clientAuth.ts, interaction.ts, endSession.ts: the endpoints it handles itself
 * - dexShims.ts     Dex's refresh tokens and error codes; dexShape.ts: Dex-shaped tokens
 * - keys.ts, storage.ts, pages.ts, wire.ts: keys, the Map adapter, the login form, HTTP helpers
 *
 * With the default profile it imitates the parts of Dex (v2.45) that a relying party can observe; see
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
import { newSigningKey } from './dex/keys.ts';
import { DexStandIn } from './dex/standIn.ts';
import type { Dex, DexOptions } from './dex/types.ts';
import { freePort } from './ports.ts';

export type { JWK } from 'jose';
export { dexSubject } from './dex/dexShape.ts';
export {
  DEX_PROFILE,
  PROFILES,
  type ProfileKey,
  PUNCTUATED_SECRET,
  type StandInProfile,
} from './dex/profiles.ts';
export type { Dex, DexClient, DexCounts, DexOptions, MintOptions } from './dex/types.ts';
export { DEMO_USERS, type DexUser } from './dex/users.ts';

/** Start a Dex stand-in listening on 127.0.0.1. */
export async function startDex(opts: DexOptions): Promise<Dex> {
  const port = opts.port ?? (await freePort());
  const dex = new DexStandIn(opts, port, await newSigningKey());
  await dex.start();
  return dex;
}
