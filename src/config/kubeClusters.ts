import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parser } from './parsers.ts';
import type { KubeCluster, RawText } from './types.ts';

/**
 * KUBE_CLUSTERS: the clusters the kubeconfig page offers. The entry parses the list on its own
 * (below); `resolveKubeClusters` then fills the defaults that come from other settings and reads
 * each caFile.
 */

export const AUDIENCE_SCOPE_PREFIX = 'audience:server:client_id:';
export const DEFAULT_KUBE_EXTRA_SCOPES = ['email', 'groups', 'profile', 'offline_access'];

const clusterSchema = z
  .object({
    name: z.string().min(1),
    server: z.url(),
    caData: z.string().optional(),
    caFile: z.string().optional(),
    clientId: z.string().min(1).optional(),
    audience: z.string().min(1).optional(),
    extraScopes: z.array(z.string().regex(/^[\x21-\x7e]+$/)).optional(),
    public: z.boolean().optional(),
    clientSecret: z.string().min(1).optional(),
  })
  .strict();

export type ClusterEntry = z.infer<typeof clusterSchema>;

/** The YAML/JSON list, validated; PEM text in caData is base64-encoded as kubeconfig wants it. */
export const kubeClusterList = (): z.ZodType<readonly ClusterEntry[], RawText> =>
  parser((text, fail) => {
    if (text === undefined) return [];
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch {
      fail('must be YAML or JSON: a list of {name, server, caData|caFile, clientId}');
      return [];
    }
    const parsed = z.array(clusterSchema).safeParse(doc);
    if (!parsed.success) {
      fail(`: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
      return [];
    }
    for (const c of parsed.data) {
      if (c.clientSecret !== undefined && c.public !== true) {
        fail(
          `${c.name}: clientSecret is shown to every user in their kubeconfig; set public: true to confirm the client is public, or remove it`,
        );
      }
    }
    return parsed.data.map((c) =>
      c.caData?.trim().startsWith('-----BEGIN')
        ? { ...c, caData: Buffer.from(c.caData.trim()).toString('base64') }
        : c,
    );
  });

/** Defaults from OIDC_CLIENT_ID and OIDC_SCOPES, each caFile read, the gateway's secret kept out. */
export function resolveKubeClusters(
  entries: readonly ClusterEntry[],
  oidc: { clientId: string; clientSecret: string | undefined; scopes: readonly string[] },
  readFile: (path: string) => string,
  problems: string[],
): readonly KubeCluster[] {
  const audienceScope = oidc.scopes.find((s) => s.startsWith(AUDIENCE_SCOPE_PREFIX));
  const clusters = entries.map((c): KubeCluster => {
    let caData = c.caData;
    if (c.clientSecret !== undefined && c.clientSecret === oidc.clientSecret) {
      problems.push(`KUBE_CLUSTERS ${c.name}: clientSecret must not be OIDC_CLIENT_SECRET`);
    }
    if (c.caFile) {
      try {
        caData = Buffer.from(readFile(c.caFile)).toString('base64');
      } catch {
        problems.push(`KUBE_CLUSTERS ${c.name}: caFile ${c.caFile} cannot be read`);
      }
    }
    const clientId = c.clientId ?? oidc.clientId;
    return {
      name: c.name,
      server: c.server,
      clientId,
      audience: c.audience ?? audienceScope?.slice(AUDIENCE_SCOPE_PREFIX.length) ?? clientId,
      extraScopes: Object.freeze([...(c.extraScopes ?? DEFAULT_KUBE_EXTRA_SCOPES)]),
      ...(caData ? { caData } : {}),
      ...(c.public === true && c.clientSecret ? { clientSecret: c.clientSecret } : {}),
    };
  });
  return Object.freeze(clusters);
}
