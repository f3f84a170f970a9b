import { BlockList, isIP } from 'node:net';
import { type BoundedCache, MemoryBudget } from '../memory/budget.ts';
import { FOREVER } from '../memory/shared.ts';

/** Parses CIDR entries ("10.0.0.0/8", "::1/128", "192.0.2.7") into a BlockList; throws on a bad entry. */
export function parseCidrList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefixText] = entry.split('/');
    const family = isIP(address);
    if (family === 0) throw new Error(`"${entry}" is not an IP address or CIDR range`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    const max = family === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : Number(prefixText);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max)
      throw new Error(`"${entry}" has a bad prefix length`);
    list.addSubnet(address, prefix, type);
  }
  return list;
}

/** Decides whether a TCP peer may set X-Forwarded-* headers. Results are memoised per address. */
export class ProxyTrust {
  readonly #list: BlockList;
  readonly #exact: BlockList;
  readonly #memo: BoundedCache<boolean>;

  /** `budget`: the app's memory budget (else a small one of its own). */
  constructor(entries: readonly string[], budget: MemoryBudget = new MemoryBudget(1024 * 1024)) {
    this.#list = parseCidrList(entries);
    this.#exact = parseCidrList(entries.filter(isSingleAddress));
    this.#memo = budget.cache('trust', { share: 0.01, sizeOf: () => 0 });
  }

  /**
   * The peer is one of the entries given as a single address (a bare address, /32 or /128): a
   * proxy named exactly, which MAX_CONNECTIONS' per-address share does not bound (a range such as
   * the pod network names every pod, not a proxy).
   */
  isNamedExactly(remoteAddress: string | undefined): boolean {
    if (!remoteAddress) return false;
    let address = remoteAddress;
    if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) address = address.slice(7);
    const family = isIP(address);
    return family !== 0 && this.#exact.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }

  isTrusted(remoteAddress: string | undefined): boolean {
    if (!remoteAddress) return false;
    const hit = this.#memo.peek(remoteAddress, 0);
    if (hit !== undefined) return hit;
    let address = remoteAddress;
    // IPv4-mapped IPv6 ("::ffff:127.0.0.1") is checked as IPv4.
    if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) address = address.slice(7);
    const family = isIP(address);
    const trusted = family !== 0 && this.#list.check(address, family === 4 ? 'ipv4' : 'ipv6');
    this.#memo.set(remoteAddress, trusted, FOREVER);
    return trusted;
  }
}

/** "192.0.2.7", "192.0.2.7/32", "::1/128": one address, not a range. */
function isSingleAddress(entry: string): boolean {
  const [address = '', prefix] = entry.split('/');
  const max = isIP(address) === 4 ? 32 : 128;
  return prefix === undefined || Number(prefix) === max;
}
