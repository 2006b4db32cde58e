/** Shared set-up for the manager unit tests: a temp dir, a real SQLite store, a manual clock, a silent logger. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { Clock, DeviceRecord } from '../../manager/fleet-types.js';
import type { StoredCredential } from '../../manager/store/index.js';
import { Store } from '../../manager/store/index.js';

export const silent: Logger = pino({ level: 'silent' });

export class ManualClock implements Clock {
  constructor(public t = 1_767_225_600_000 /* 2026-01-01 */) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface TempStore {
  dir: string;
  path: string;
  store: Store;
  reopen(): Store;
  cleanup(): void;
}

export function tempStore(): TempStore {
  const dir = mkdtempSync(join(tmpdir(), 'fg-mgr-'));
  const path = join(dir, 'manager.db');
  const t: TempStore = {
    dir,
    path,
    store: Store.open(path),
    reopen() {
      t.store.close();
      t.store = Store.open(path);
      return t.store;
    },
    cleanup() {
      t.store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

export function device(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  return {
    id,
    site: 'plant-a',
    labels: {},
    hardware: 'gw-x86',
    adapters: ['modbus'],
    created: 1,
    removed: null,
    ...over,
  };
}

export function fakeCredential(device: string): StoredCredential {
  return {
    device,
    params: { N: 1024, r: 8, p: 1, keylen: 32 },
    salt: new Uint8Array(16),
    hash: new Uint8Array(32),
    created: 1,
  };
}
