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

describe('MemorySlotStore.storeView (the update runner reads it on every event and report)', () => {
  const id = (c: string) => c.repeat(64);
  const viewFrom = (s: MemorySlotStore) => {
    const slot = (n: 'A' | 'B') => {
      const i = s.slot(n);
      return { snapshot: i.snapshot, state: i.state, stored: i.stored, size: i.size };
    };
    return { active: s.boot().active, trial: s.boot().trial, A: slot('A'), B: slot('B') };
  };

  it('equals what slot() and boot() read, through a download, a switch and a commit', () => {
    const s = new MemorySlotStore();
    expect(s.storeView()).toEqual(viewFrom(s));
    s.beginDownload('B', { snapshot: id('b'), manifest: new Uint8Array([1, 2, 3]), size: 4, generation: 1 });
    s.appendChunk('B', 0, new Uint8Array([9, 9]));
    expect(s.storeView()).toEqual(viewFrom(s));
    expect(s.storeView().B).toEqual({ snapshot: id('b'), state: 'downloading', stored: 2, size: 4 });
    s.appendChunk('B', 2, new Uint8Array([9, 9]));
    s.markStaged('B');
    s.switchTo('B');
    expect(s.storeView()).toEqual(viewFrom(s));
    expect(s.storeView()).toMatchObject({ active: 'B', trial: true });
    expect(s.countAgentStart()).toBe(1);
    expect(s.agentStarts()).toBe(s.boot().agentStarts);
    expect(s.agentStarts()).toBe(1);
    s.commit();
    expect(s.storeView()).toEqual(viewFrom(s));
    expect(s.slot('B').manifest).toEqual(new Uint8Array([1, 2, 3]));
    s.close();
    expect(() => s.storeView()).toThrow(/FG_STORE_CLOSED|closed/i);
  });

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
