import { describe, expect, it } from 'vitest';
import { createMemoryBacking, MemorySlotStore } from '../../agent/memory-slot-store.js';
import { type ContractSubject, slotStoreContract } from './slot-store-contract.js';

slotStoreContract('memory', () => {
  const backing = createMemoryBacking();
  let store = new MemorySlotStore({ backing });
  const subject: ContractSubject = {
    store,
    reopen() {
      store.close();
      store = new MemorySlotStore({ backing });
      subject.store = store;
      return store;
    },
    failWrites: (table) => store.failWrites(table),
    healWrites: () => store.healWrites(),
    cleanup: () => store.close(),
  };
  return subject;
});

describe('MemorySlotStore.chunkViews', () => {
  const id = (c: string) => c.repeat(64);

  it('chunkViews yields the stored chunks themselves, in order; chunks() yields copies', () => {
    const s = new MemorySlotStore();
    s.beginDownload('B', { snapshot: id('b'), manifest: new Uint8Array([1]), size: 4, generation: 1 });
    s.appendChunk('B', 0, new Uint8Array([1, 2]));
    s.appendChunk('B', 2, new Uint8Array([3, 4]));
    const views = [...s.chunkViews('B')];
    expect(views).toEqual([new Uint8Array([1, 2]), new Uint8Array([3, 4])]);
    expect(views[0]).toBe(s.backing.chunks.B[0]);
    expect([...s.chunks('B')][0]).not.toBe(s.backing.chunks.B[0]);
    expect([...s.chunkViews('A')]).toEqual([]);
  });
});
