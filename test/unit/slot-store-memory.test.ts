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
