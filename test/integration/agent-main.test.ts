// The gateway process's set-up (agent/main.ts startAgent) against a real manager on the embedded
// broker (port 0): the agent connects, reports and idles without building mqtt.js' number cache
// (65,536 pre-built Buffers, 6 MiB of heap: docs/benchmarks.md "agent-rss").
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../agent/config.js';
import { type RunningAgent, startAgent } from '../../agent/main.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

// mqtt-packet is the packet writer mqtt.js uses; its cache is module state shared by every client.
const numbers = createRequire(import.meta.url)('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };

describe('startAgent (the gateway process)', () => {
  let fleet: TestFleet;
  let running: RunningAgent | undefined;

  beforeAll(async () => {
    fleet = await startTestFleet();
  });

  afterAll(async () => {
    await running?.stop();
    await fleet.close();
  });

  it('connects and reports without pre-building the 65,536 packet-number buffers', async () => {
    expect(Object.keys(numbers.cache)).toHaveLength(0);
    const added = await fleet.manager.service.addDevice(
      { id: 'gw-main', site: 's1', hardware: 'gw-x86' },
      { dataDir: join(fleet.dir, 'agents', 'gw-main') },
    );
    const cfg = parseAgentConfig({ ...added.config, log_level: 'silent' }, fleet.dir);
    mkdirSync(cfg.data_dir, { recursive: true });
    running = await startAgent(cfg, pino({ level: 'silent' }));
    await fleet.waitFor('device online and reported', () => {
      const d = fleet.device('gw-main');
      return d.state === 'online' && d.reported !== null;
    });
    // mqtt.js wrote CONNECT, PUBLISHes and SUBSCRIBE: with `writeCache` on, the first of them fills the cache.
    expect(Object.keys(numbers.cache)).toHaveLength(0);
  });
});
