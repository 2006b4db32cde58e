/**
 * The embedded broker's persistence: aedes-persistence's in-memory store (subscriptions, QoS
 * queues, wills) with its retained-message store replaced by an index (retained-index.ts).
 *
 * aedes 1.2 calls the promise interface of aedes-persistence 11 (the "async" persistence, whose
 * `setup` must be an `async function`); this class subclasses that implementation and overrides
 * only the retained methods, so everything else keeps upstream behaviour. It passes
 * aedes-persistence's own abstract suite (test/unit/broker-persistence-abstract.test.ts).
 *
 * It also counts the QoS > 0 packets queued per client, so `outgoingEmpty` can say without a
 * stream that a connecting client has nothing queued: aedes (patched, patches/aedes+1.2.0.patch)
 * then skips the offline queue's `pipeline()` on connect, which was 8 % of a reconnect storm's
 * CPU; and it lists the retained packets of a SUBSCRIBE as an array (`retainedPacketsCombi`), which
 * the patched aedes sends without a stream (docs/broker.md "The offline queue on connect").
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

/** The client fields the outgoing-queue methods read. */
interface ClientRef {
  readonly id: string;
}

/** The async persistence interface of aedes-persistence 11 (types/asyncPersistence.d.ts), as far as we touch it. */
export interface AsyncPersistence {
  setup(broker: unknown): Promise<void>;
  outgoingEnqueue(sub: { clientId: string }, packet: unknown): Promise<void>;
  outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, packet: unknown): Promise<void>;
  outgoingUpdate(client: ClientRef, packet: unknown): Promise<void>;
  outgoingClearMessageId(client: ClientRef, packet: unknown): Promise<unknown>;
  storeRetained(packet: RetainedPacket): Promise<void>;
  subscriptionsByClient(client: ClientRef): Promise<unknown[] | null>;
  cleanSubscriptions(client: ClientRef): Promise<void>;
  delWill(client: ClientRef): Promise<unknown>;
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
  /**
   * Packets in each client's outgoing queue, never fewer than upstream holds: an enqueue counts
   * before upstream's (synchronous) append, a removal only once upstream says it removed one.
   */
  readonly #queued = new Map<string, number>();
  /** How often outgoingEmpty said "empty" (tests: the patched aedes took the fast path). */
  emptyQueueHits = 0;
  /** How often aedes asked retainedPacketsCombi (tests: the patched SUBSCRIBE path was used). */
  retainedListed = 0;

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
    return Readable.from(this.#combi(patterns));
  }

  /**
   * The same packets as createRetainedStreamCombi, as an array: the patched aedes (completeSubscribe
   * in lib/handlers/subscribe.js, patches/aedes+1.2.0.patch) sends them one after the other without
   * a stream, a pipe and a transform per SUBSCRIBE.
   */
  retainedPacketsCombi(patterns: string[]): RetainedPacket[] {
    this.retainedListed++;
    return this.#combi(patterns);
  }

  #combi(patterns: string[]): RetainedPacket[] {
    if (patterns.length === 1) return this.#retained.match(patterns[0]!);
    const seen = new Set<string>();
    const out: RetainedPacket[] = [];
    for (const pattern of patterns) {
      for (const packet of this.#retained.match(pattern)) {
        if (seen.has(packet.topic)) continue;
        seen.add(packet.topic);
        out.push(packet);
      }
    }
    return out;
  }

  override outgoingEnqueue(sub: { clientId: string }, packet: unknown): Promise<void> {
    this.#count(sub.clientId, 1);
    return super.outgoingEnqueue(sub, packet);
  }

  override outgoingEnqueueCombi(subs: ReadonlyArray<{ clientId: string }>, packet: unknown): Promise<void> {
    for (const sub of subs) this.#count(sub.clientId, 1);
    return super.outgoingEnqueueCombi(subs, packet);
  }

  override async outgoingClearMessageId(client: ClientRef, packet: unknown): Promise<unknown> {
    const removed = await super.outgoingClearMessageId(client, packet);
    if (removed !== undefined) this.#count(client.id, -1);
    return removed;
  }

  /**
   * True when nothing is queued for the client: its connect needs no offline-queue stream. Read by
   * the patched aedes (emptyQueue in lib/handlers/connect.js); false sends it the upstream way.
   */
  outgoingEmpty(client: ClientRef): boolean {
    const empty = !this.#queued.has(client.id);
    if (empty) this.emptyQueueHits++;
    return empty;
  }

  #count(clientId: string, delta: number): void {
    const n = (this.#queued.get(clientId) ?? 0) + delta;
    if (n > 0) this.#queued.set(clientId, n);
    else this.#queued.delete(clientId);
  }

  override async destroy(): Promise<void> {
    await super.destroy();
    this.#retained.clear();
    this.#queued.clear();
  }
}
