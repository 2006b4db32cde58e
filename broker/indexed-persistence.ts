/**
 * The embedded broker's persistence: aedes-persistence's in-memory store (subscriptions, QoS
 * queues, wills) with its retained-message store replaced by an index (retained-index.ts).
 *
 * aedes 1.2 calls the promise interface of aedes-persistence 11 (the "async" persistence, whose
 * `setup` must be an `async function`); this class subclasses that implementation and overrides
 * only the retained methods, so everything else keeps upstream behaviour. It passes
 * aedes-persistence's own abstract suite (test/unit/broker-persistence-abstract.test.ts).
 */
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { RetainedIndex } from './retained-index.js';

/** The fields of an aedes packet the retained store reads; the rest is kept as it came. */
export interface RetainedPacket {
  readonly topic: string;
  readonly payload: Buffer | Uint8Array | string;
  readonly [field: string]: unknown;
}

/** The async persistence interface of aedes-persistence 11 (types/asyncPersistence.d.ts), as far as we touch it. */
export interface AsyncPersistence {
  setup(broker: unknown): Promise<void>;
  storeRetained(packet: RetainedPacket): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  destroy(): Promise<void>;
}

type AsyncPersistenceClass = new (opts?: { broadcastSubscriptions?: boolean }) => AsyncPersistence;

// A deep CommonJS import without a declaration file next to it (the package keeps its types
// under types/), so it is loaded with require and typed by the interface above.
const require = createRequire(import.meta.url);
const UpstreamMemoryPersistence = require('aedes-persistence/asyncPersistence.js') as AsyncPersistenceClass;

export class IndexedPersistence extends UpstreamMemoryPersistence {
  readonly #retained = new RetainedIndex<RetainedPacket>();

  /** Lookup work counters of the retained index (for tests and benchmarks). */
  get retainedWork(): RetainedIndex<RetainedPacket>['work'] {
    return this.#retained.work;
  }

  get retainedCount(): number {
    return this.#retained.size;
  }

  override async storeRetained(pkt: RetainedPacket): Promise<void> {
    // Copy: aedes reuses and mutates packet objects after this call (upstream does the same).
    const packet = { ...pkt };
    // [MQTT-3.3.1-10]/[MQTT-3.3.1-11]: a retained message with an empty payload clears the topic.
    if (packet.payload.length === 0) this.#retained.delete(packet.topic);
    else this.#retained.set(packet.topic, packet);
  }

  override createRetainedStream(pattern: string): Readable {
    return Readable.from(this.#retained.match(pattern));
  }

  /**
   * Retained messages for every filter of one SUBSCRIBE. A topic matched by several filters is sent
   * once: MQTT 3.1.1 section 3.3.5 allows one copy per overlapping subscription but requires none.
   */
  override createRetainedStreamCombi(patterns: string[]): Readable {
    if (patterns.length === 1) return this.createRetainedStream(patterns[0]!);
    const seen = new Set<string>();
    const out: RetainedPacket[] = [];
    for (const pattern of patterns) {
      for (const packet of this.#retained.match(pattern)) {
        if (seen.has(packet.topic)) continue;
        seen.add(packet.topic);
        out.push(packet);
      }
    }
    return Readable.from(out);
  }

  override async destroy(): Promise<void> {
    await super.destroy();
    this.#retained.clear();
  }
}
