import type { z } from 'zod';

/** The shapes a setting parses into (see settings.ts and rules.ts). */

export interface CookieSecret {
  /** Stable identifier of the secret, as written in COOKIE_SECRETS (`id:secret`). */
  readonly id: string;
  readonly secret: string;
}

export interface KubeCluster {
  readonly name: string;
  readonly server: string;
  /** Base64 of the PEM CA bundle (caFile is read into it; PEM text is encoded). */
  readonly caData?: string;
  /** The Dex client kubelogin uses (default OIDC_CLIENT_ID). */
  readonly clientId: string;
  /** The API server's --oidc-client-id; default: the audience:server:client_id:X of OIDC_SCOPES, else clientId. */
  readonly audience: string;
  /** kubelogin --oidc-extra-scope values (the cross-client audience scope is added when audience ≠ clientId). */
  readonly extraScopes: readonly string[];
  /** Only for a client declared public (its "secret" is shown to every user). */
  readonly clientSecret?: string;
}

export type RedisSettings =
  | { readonly mode: 'single'; readonly url: string; readonly username?: string; readonly password?: string }
  | {
      readonly mode: 'sentinel';
      readonly sentinels: readonly { host: string; port: number }[];
      readonly name: string;
      readonly username?: string;
      readonly password?: string;
      readonly tls: boolean;
    }
  | {
      readonly mode: 'cluster';
      readonly nodes: readonly { host: string; port: number }[];
      readonly username?: string;
      readonly password?: string;
      readonly tls: boolean;
    };

/** The decision endpoints' own listener (AUTH_PORT), optionally with (mutual) TLS. */
export interface DecisionListener {
  readonly port: number;
  readonly tls?: {
    readonly certFile: string;
    readonly keyFile: string;
    /** Set: the proxy must present a client certificate signed by this CA (mutual TLS). */
    readonly clientCaFile?: string;
  };
}

/** The admin API's listener (ADMIN_PORT): a bearer token file and/or mutual TLS. */
export interface AdminListener extends DecisionListener {
  /** ADMIN_HOST: the address it listens on (loopback unless widened). */
  readonly host: string;
  /** The file holding the bearer token, read at every call (a rotated Secret takes effect at once). */
  readonly tokenFile?: string;
}

/** One row of the settings table as the README shows it. */
export interface SettingSpec {
  /** Environment variable (also the CONFIG_FILE key; `<name>_FILE` reads it from a file). */
  readonly name: string;
  /** Default as written in the README: a value in backticks, `required`, or words. */
  readonly default: string;
  /** What it does, in Markdown (one line). */
  readonly description: string;
  /** Never printed: redacted from problems, logs and `doctor` output. */
  readonly secret?: boolean;
}

/** The raw text of one setting; undefined when it is not set anywhere. */
export type RawText = string | undefined;

/** A row of the table: the README's columns, the parser of its raw text, and where it lands in Config. */
export interface SettingDef extends SettingSpec {
  /** Parses this setting alone; each issue becomes one problem, prefixed with the setting's name. */
  readonly schema: z.ZodType<unknown, RawText>;
  /** The Config field it fills as is; absent when a rule (rules.ts) combines it with others. */
  readonly field?: string;
}
