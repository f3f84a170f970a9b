import type { Config } from './load.ts';

/**
 * TRUSTED_PROXIES entries wider than a proxy's own range (IPv4 shorter than /24, IPv6 shorter
 * than /64; loopback aside): typically the pod network, which every pod shares, so any pod that reaches PORT may
 * set X-Forwarded-For (its own rate-limit budget, a forged address in the logs) and, without
 * mutual TLS, ask the decision port. Empty when the entries are narrow or mutual TLS guards it.
 */
export function broadTrustedProxies(config: Pick<Config, 'trustedProxies' | 'decisionListener'>): string[] {
  if (config.decisionListener?.tls?.clientCaFile) return [];
  return config.trustedProxies.filter((entry) => {
    const [address = '', prefixText] = entry.split('/');
    if (prefixText === undefined || address.startsWith('127.') || address === '::1') return false;
    const prefix = Number(prefixText);
    return address.includes(':') ? prefix < 64 : prefix < 24;
  });
}

/** The warning for broadTrustedProxies, or undefined. */
export function broadTrustedProxiesWarning(
  config: Pick<Config, 'trustedProxies' | 'decisionListener'>,
): string | undefined {
  const broad = broadTrustedProxies(config);
  if (broad.length === 0) return undefined;
  return `TRUSTED_PROXIES ${broad.join(', ')} is wider than a proxy's own range (likely the pod network): every pod in it may set X-Forwarded-For, and without mutual TLS (AUTH_PORT with AUTH_TLS_CLIENT_CA_FILE) reach the decisions if the NetworkPolicy is not enforced; narrow it to the proxy's addresses or use mutual TLS (README: Threat model)`;
}
