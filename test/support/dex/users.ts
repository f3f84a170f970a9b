/** The stand-in's users: Dex static passwords (`login`/`password`) and what the connector knows about them. */

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
