/**
 * Names and versions of the snapshots the simulated fleet has seen, for profile rules that select
 * `name@version` or a version. A device knows a snapshot by id; its name and version are in the
 * signed manifest its slot store keeps, which is opened (and verified) once per snapshot per fleet.
 */
import type { MemorySlotBacking } from '../agent/memory-slot-store.js';
import type { TrustStore } from '../protocol/keys.js';
import { openManifest } from '../protocol/manifest.js';
import type { SnapshotRef } from './profile-match.js';

export class SnapshotCatalog {
  private readonly known = new Map<string, SnapshotRef>();

  /** Registers a snapshot by hand (tests, or a simulator that knows the bundles). */
  add(ref: SnapshotRef): void {
    this.known.set(ref.id, ref);
  }

  /** The snapshot `id` as far as it is known; name and version are null when no manifest was seen. */
  describe(id: string, backing: MemorySlotBacking, trust: TrustStore): SnapshotRef {
    const cached = this.known.get(id);
    if (cached) return cached;
    for (const slot of [backing.slots.A, backing.slots.B]) {
      if (slot.snapshot !== id || slot.manifest === null) continue;
      const opened = openManifest(slot.manifest, trust);
      if (!opened.ok || opened.value.id !== id) continue;
      const ref: SnapshotRef = { id, name: opened.value.manifest.name, version: opened.value.manifest.version };
      this.known.set(id, ref);
      return ref;
    }
    return { id, name: null, version: null };
  }
}
