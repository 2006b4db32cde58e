/**
 * Download faults at the edges of a real agent link (the MQTT client, topics and downloader stay
 * the agent's own): fetch requests are delayed (slow_link) or lost (lossy_link) on their way out,
 * chunks are lost or get one bit flipped (corrupt_chunks) on their way in. A flipped bit in the
 * payload bytes (not in the CBOR envelope) reaches the slot store intact in form, so the agent's
 * digest check is what catches it: the failure lands in `integrity`, as it would on a device.
 */
import type { AgentLink, AgentLinkEvents } from '../agent/mqtt-link.js';
import { decodeChunk, decodeFetch, encodeChunk } from '../protocol/messages.js';
import type { Faults } from './profile-schema.js';

export interface LinkFaultHooks {
  /** The download faults for `snapshot` (the one being fetched). */
  faults(snapshot: string): Faults;
  /** Uniform random in [0, 1). */
  random(): number;
  /** Counts what was done (the fleet summary shows it). */
  count?(what: 'fetch_lost' | 'fetch_delayed' | 'chunk_lost' | 'chunk_corrupted'): void;
}

/** Flips one bit of a copy of `bytes` (never of the original: it may be shared). */
export function flipBit(bytes: Uint8Array, random: () => number): Uint8Array {
  const out = Uint8Array.from(bytes);
  if (out.byteLength === 0) return out;
  const bit = Math.floor(random() * out.byteLength * 8);
  out[bit >> 3] = (out[bit >> 3] as number) ^ (1 << (bit & 7));
  return out;
}

export function installLinkFaults(link: AgentLink, hooks: LinkFaultHooks): void {
  const publish = link.publish.bind(link);
  link.publish = (channel, payload) => {
    if (channel !== 'fetch') return publish(channel, payload);
    const req = decodeFetch(payload);
    if (!req.ok) return publish(channel, payload);
    const f = hooks.faults(req.value.snapshot);
    if (f.lossy_link && hooks.random() * 100 < f.lossy_link) {
      hooks.count?.('fetch_lost');
      return Promise.resolve(); // sent, and lost on the way: the downloader's timeout asks again
    }
    const delay = f.slow_link;
    if (!delay) return publish(channel, payload);
    hooks.count?.('fetch_delayed');
    return new Promise<void>((resolve, reject) => {
      setTimeout(() => publish(channel, payload).then(resolve, reject), delay).unref?.();
    });
  };

  const emit = link.emit.bind(link) as (event: keyof AgentLinkEvents, ...args: unknown[]) => boolean;
  const patched = (event: keyof AgentLinkEvents, ...args: unknown[]): boolean => {
    if (event !== 'chunk') return emit(event, ...args);
    const payload = args[0] as Buffer;
    const msg = decodeChunk(payload);
    if (!msg.ok || !('bytes' in msg.value)) return emit(event, payload);
    const f = hooks.faults(msg.value.snapshot);
    if (f.lossy_link && hooks.random() * 100 < f.lossy_link) {
      hooks.count?.('chunk_lost');
      return false;
    }
    if (f.corrupt_chunks && hooks.random() * 100 < f.corrupt_chunks) {
      hooks.count?.('chunk_corrupted');
      const bad = encodeChunk({ ...msg.value, bytes: flipBit(msg.value.bytes, hooks.random) });
      return emit(event, Buffer.from(bad.buffer, bad.byteOffset, bad.byteLength));
    }
    return emit(event, payload);
  };
  link.emit = patched as typeof link.emit;
}
