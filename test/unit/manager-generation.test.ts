import { copyFileSync, rmSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DesiredPublisher } from '../../manager/desired.js';
import { nextGeneration } from '../../manager/generation.js';
import type { MqttLink } from '../../manager/mqtt-link.js';
import type { StoredSnapshot } from '../../manager/store/index.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle } from '../fixtures/snapshots.js';
import { device, fakeCredential, ManualClock, silent, tempStore } from './manager-harness.js';

describe('generation (DESIGN.md: from the clock, never less than last + 1)', () => {
  it('is always > last and >= now', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 50 }), fc.nat({ max: 2 ** 50 }), (last, now) => {
        const g = nextGeneration(last, now);
        expect(g).toBeGreaterThan(last);
        expect(g).toBeGreaterThanOrEqual(now);
        expect(Number.isSafeInteger(g)).toBe(true);
      }),
    );
  });

  it('keeps growing within one millisecond and when the clock steps back', () => {
    expect(nextGeneration(1000, 1000)).toBe(1001);
    expect(nextGeneration(1001, 1000)).toBe(1002);
    expect(nextGeneration(5000, 1000)).toBe(5001);
  });

  it('after a store restored from an older backup, new generations still exceed what devices saw', () => {
    const t = tempStore();
    const backup = `${t.path}.bak`;
    try {
      const clock = new ManualClock();
      const links: string[] = [];
      const link = { publish: async (topic: string) => void links.push(topic), connected: true } as unknown as MqttLink;
      const b = testBundle();
      const snap = { id: b.id, manifestCose: b.opened.cose } as unknown as StoredSnapshot;
      t.store.devices.insert(device('gw-1'), fakeCredential('gw-1'));
      t.store.db
        .prepare(
          `INSERT INTO snapshots (id, name, version, seq, size, sha256, created, pushed, kid, manifest_cose, manifest_json, payload_file)
         VALUES (?, 'n', '1', 1, 0, '', 0, 0, '', ?, '{}', '')`,
        )
        .run(b.id, Buffer.from(b.opened.cose));
      const pub = () =>
        new DesiredPublisher({
          store: t.store,
          link,
          managerKey: testKeys().manager,
          prefix: 'fleetgate/v1',
          clock,
          logger: silent,
        });
      const g1 = pub().assign([device('gw-1')], snap)[0]!.generation;
      t.store.db.exec(`VACUUM INTO '${backup}'`);
      clock.advance(10);
      const g2 = pub().assign([device('gw-1')], snap)[0]!.generation; // the device has seen g2
      // Restore the backup: the store forgets g2.
      t.store.close();
      rmSync(`${t.path}-wal`, { force: true });
      rmSync(`${t.path}-shm`, { force: true });
      copyFileSync(backup, t.path);
      t.reopen();
      expect(t.store.desired.lastGeneration('gw-1')).toBe(g1);
      clock.advance(1);
      const g3 = pub().assign([device('gw-1')], snap)[0]!.generation;
      expect(g2).toBeGreaterThan(g1);
      expect(g3).toBeGreaterThan(g2);
    } finally {
      t.cleanup();
    }
  });
});
