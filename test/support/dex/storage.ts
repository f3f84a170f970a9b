import type { Adapter, AdapterPayload } from 'oidc-provider';

/** Storage: an unbounded Map adapter with expiry (the built-in memory adapter is an LRU of 1000 entries). */

const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

export class MapStore {
  readonly data = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  readonly grantMembers = new Map<string, Set<string>>();
  readonly sessionUids = new Map<string, string>();
  readonly userCodes = new Map<string, string>();
  private writes = 0;

  get(key: string): AdapterPayload | undefined {
    const entry = this.data.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.data.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  set(key: string, payload: AdapterPayload, expiresAt: number): void {
    this.data.set(key, { payload, expiresAt });
    if (++this.writes % 5000 === 0) this.sweep();
  }

  revokeGrant(grantId: string): void {
    const members = this.grantMembers.get(grantId);
    if (members) {
      for (const key of members) this.data.delete(key);
      this.grantMembers.delete(grantId);
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, entry] of this.data) {
      if (entry.expiresAt <= now) this.data.delete(key);
    }
    for (const [grantId, members] of this.grantMembers) {
      for (const key of members) if (!this.data.has(key)) members.delete(key);
      if (members.size === 0) this.grantMembers.delete(grantId);
    }
    for (const [uid, id] of this.sessionUids)
      if (!this.data.has(`Session:${id}`)) this.sessionUids.delete(uid);
  }
}

export class MapAdapter implements Adapter {
  private readonly model: string;
  private readonly store: MapStore;

  constructor(model: string, store: MapStore) {
    this.model = model;
    this.store = store;
  }

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const key = this.key(id);
    const expiresAt =
      typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
    if (this.model === 'Session' && typeof payload.uid === 'string')
      this.store.sessionUids.set(payload.uid, id);
    if (GRANTABLE.has(this.model) && payload.grantId) {
      let members = this.store.grantMembers.get(payload.grantId);
      if (!members) {
        members = new Set();
        this.store.grantMembers.set(payload.grantId, members);
      }
      members.add(key);
    }
    if (payload.userCode) this.store.userCodes.set(payload.userCode, id);
    this.store.set(key, payload, expiresAt);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.store.get(this.key(id));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const id = this.store.sessionUids.get(uid);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const id = this.store.userCodes.get(userCode);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id: string): Promise<void> {
    const payload = this.store.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id: string): Promise<void> {
    this.store.data.delete(this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    this.store.revokeGrant(grantId);
  }
}
