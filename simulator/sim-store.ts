/**
 * The simulated device's slot store: the agent's MemorySlotStore (same contract suite as SQLite),
 * plus the two faults that live in storage and one memory saving:
 *  - disk_full: chunk writes fail through MemorySlotStore.failWrites, as on a full disk (storage);
 *  - agent_crash_mid_switch: a hook right after the switch transaction, where the simulator
 *    halts the agent and restarts it on the same backing, as a real agent reopens its SQLite file;
 *  - equal payload chunks of many devices share one buffer (10,000 devices holding the same
 *    snapshot would otherwise hold 10,000 copies of it).
 */
import { createHash } from 'node:crypto';
import { type MemorySlotBacking, MemorySlotStore } from '../agent/memory-slot-store.js';
import type { SlotName } from '../protocol/messages.js';

function bytesOf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Content-addressed chunk buffers shared by every device of a fleet. */
export class ChunkPool {
  private readonly chunks = new Map<string, Uint8Array>();
  private bytes = 0;

  /** Stop sharing beyond this many bytes (corrupted chunks are unique; they must not grow it forever). */
  constructor(private readonly maxBytes = 256 * 1024 * 1024) {}

  get size(): number {
    return this.bytes;
  }

  /**
   * The shared buffer with `chunk`'s content (or `chunk` itself, now shared). `at` names where the
   * chunk sits (snapshot and offset): equal chunks of many devices are then found by place and
   * compared byte for byte, which costs a memcmp instead of a SHA-1 of every chunk; a chunk whose
   * bytes differ from the one at its place (a corrupted download) falls back to its content hash.
   */
  intern(chunk: Uint8Array, at?: string): Uint8Array {
    if (at !== undefined) {
      const placed = this.chunks.get(`@${at}:${chunk.byteLength}`);
      if (placed && bytesOf(placed).equals(bytesOf(chunk))) return placed;
      if (!placed) return this.keep(`@${at}:${chunk.byteLength}`, chunk);
    }
    const key = `${chunk.byteLength}:${createHash('sha1').update(chunk).digest('base64')}`;
    return this.chunks.get(key) ?? this.keep(key, chunk);
  }

  private keep(key: string, chunk: Uint8Array): Uint8Array {
    if (this.bytes + chunk.byteLength > this.maxBytes) return chunk;
    this.chunks.set(key, chunk);
    this.bytes += chunk.byteLength;
    return chunk;
  }

  clear(): void {
    this.chunks.clear();
    this.bytes = 0;
  }
}

export interface SimStoreHooks {
  /** True when writes of `snapshot`'s payload must fail (disk_full). */
  diskFull(snapshot: string): boolean;
  /** Called right after a switch to `to` committed (before the runtime starts). */
  afterSwitch(to: SlotName): void;
}

export class SimSlotStore extends MemorySlotStore {
  constructor(
    backing: MemorySlotBacking,
    private readonly hooks: SimStoreHooks,
    private readonly pool: ChunkPool | null,
  ) {
    super({ backing });
  }

  override appendChunk(slot: SlotName, offset: number, bytes: Uint8Array): number {
    const snapshot = this.backing.slots[slot].snapshot;
    if (snapshot !== null && this.hooks.diskFull(snapshot)) {
      this.failWrites('chunk');
      try {
        return super.appendChunk(slot, offset, bytes);
      } finally {
        this.healWrites();
      }
    }
    const stored = super.appendChunk(slot, offset, bytes);
    if (this.pool && bytes.byteLength > 0) {
      // The store kept its own copy; swap it for the shared buffer of equal content.
      const list = this.backing.chunks[slot];
      const last = list[list.length - 1];
      if (last) list[list.length - 1] = this.pool.intern(last, snapshot === null ? undefined : `${snapshot}:${offset}`);
    }
    return stored;
  }

  override switchTo(to: SlotName): void {
    super.switchTo(to);
    this.hooks.afterSwitch(to);
  }
}
