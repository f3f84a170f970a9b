import { broadTrustedProxiesWarning, type Config } from '../../config.ts';
import { type DoctorCheck, type Finding, ok, warning } from '../types.ts';

/** TRUSTED_PROXIES narrow enough to name the proxy, or mutual TLS in front of the decisions. */
export function checkTrustedProxies(config: Config): Finding[] {
  const broad = broadTrustedProxiesWarning(config);
  if (broad) return [warning(broad)];
  return [ok(`TRUSTED_PROXIES ${config.trustedProxies.join(', ')}`)];
}

export const check: DoctorCheck = {
  order: 75,
  topic: 'trusted proxies',
  run: (ctx) => checkTrustedProxies(ctx.config),
};
