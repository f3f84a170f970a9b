import { SETTING_NAMES } from './settings.ts';

/**
 * "Did you mean": names that are not settings but look like ours. In the environment only names
 * that start like one of ours (`OIDC_`, `COOKIE_`, `REDIS_`, … and `DFA_`) are considered, so
 * PATH, HOME or another program's variables are never mentioned; Kubernetes service links
 * (`REDIS_SERVICE_HOST`, `REDIS_PORT_6379_TCP`, …) are left alone too.
 */

/** `OIDC_`, `COOKIE_`, …: the first word of every setting name, and DFA_ (dex-forward-auth). */
const PREFIXES = new Set([
  'DFA_',
  ...SETTING_NAMES.filter((n) => n.includes('_')).map((n) => n.slice(0, n.indexOf('_') + 1)),
]);

const SERVICE_LINK =
  /_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$/;

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
export function editDistance(a: string, b: string): number {
  let twoBack: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      const swapped = i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1];
      if (swapped) best = Math.min(best, twoBack[j - 2]! + 1);
      current.push(best);
    }
    twoBack = previous;
    previous = current;
  }
  return previous[b.length]!;
}

const words = (name: string): string => name.split('_').sort().join('_');

/**
 * How far `name` is from `setting` (lower is closer), or undefined when it is not a look-alike: a
 * few typos (a typo that only adds or drops letters at the end ranks first), the same words in
 * another order, or a word missing or extra at the end.
 */
function closeness(name: string, setting: string): number | undefined {
  if (name === setting) return 0;
  if (words(name) === words(setting)) return 1;
  const [shorter, longer] = name.length < setting.length ? [name, setting] : [setting, name];
  const extended = longer.startsWith(shorter) && shorter.length > shorter.indexOf('_') + 1;
  const distance = editDistance(name, setting);
  if (distance <= Math.min(3, Math.floor(setting.length / 4))) return extended ? distance - 0.5 : distance;
  return extended ? 2.5 : undefined;
}

/**
 * The settings `name` most likely meant, closest first (at most three): a typo, a missing or extra
 * word, words swapped, or a `DFA_` prefix. `X_FILE` names are matched against the `_FILE` forms.
 */
export function suggestionsFor(name: string): string[] {
  const upper = name.toUpperCase();
  const suffix = upper.endsWith('_FILE') ? '_FILE' : '';
  const variants = [upper, upper.replace(/^DFA_/, '')];
  const scored: { target: string; score: number }[] = [];
  for (const setting of SETTING_NAMES) {
    const target = `${setting}${suffix}`;
    const scores = variants.map((v) => closeness(v, target)).filter((s): s is number => s !== undefined);
    if (scores.length > 0) scored.push({ target, score: Math.min(...scores) });
  }
  scored.sort((a, b) => a.score - b.score);
  const best = scored[0]?.score ?? 0;
  return scored
    .filter((s) => (best === 0 ? s.score === 0 : s.score < best + 1))
    .slice(0, 3)
    .map((s) => s.target);
}

export const didYouMean = (suggestions: readonly string[]): string =>
  suggestions.length === 0 ? '' : ` (did you mean ${suggestions.join(' or ')}?)`;

export interface Lookalikes {
  /** Names close to a setting: a typo would silently drop the setting (a secret, say), so start-up stops. */
  readonly problems: string[];
  /** Names that only start like ours. */
  readonly warnings: string[];
}

/** Environment names that look like settings but are not (`known`: the names that are read). */
export function environmentLookalikes(names: Iterable<string>, known: ReadonlySet<string>): Lookalikes {
  const problems: string[] = [];
  const warnings: string[] = [];
  for (const name of names) {
    const upper = name.toUpperCase();
    if (known.has(name) || SERVICE_LINK.test(upper)) continue;
    if (![...PREFIXES].some((p) => upper.startsWith(p))) continue;
    const suggestions = suggestionsFor(name);
    if (suggestions.length > 0) problems.push(`${name} is not a setting${didYouMean(suggestions)}`);
    else warnings.push(`${name} is not a setting of dex-forward-auth and is ignored`);
  }
  return { problems, warnings };
}
