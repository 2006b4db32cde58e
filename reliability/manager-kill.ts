/**
 * Area "manager kill": a real manager process (embedded broker, SQLite, rollout service) is
 * SIGKILLed at each rollout state and started again on the same data dir and ports; the
 * simulated fleet (simulator/: real agents, in-memory slot stores, simulated runtimes) rides it
 * out. After each: the rollout resumed and ended as it should (completed, or rolled back when a
 * rollback was asked for), every device runs what that end says, no device ever received a
 * desired document with a lower generation than one it had seen, and nothing was counted twice
 * (each device once in the rollout, counts adding up, no device verdict twice in the ledger).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { RolloutDetail } from '../manager/rollout-service.js';
import type { PayloadFile } from '../protocol/bundle.js';
import { decodeCbor } from '../protocol/cbor.js';
import { normalizeInts } from '../protocol/cbor-canonical.js';
import { peekCose } from '../protocol/cose.js';
import { parseSigningKeyPem, type SigningKey } from '../protocol/keys.js';
import { unwrap } from '../protocol/result.js';
import { type EnrolledDevice, generateDevices, SimFleet } from '../simulator/index.js';
import { sleep, waitFor } from './fleet.js';
import { ManagerProcess } from './manager-process.js';
import { type AreaResult, Tally } from './report.js';
import { rng } from './rng.js';
import { pushSnapshot, settledOn } from './sim-campaign.js';

const TERMINAL = new Set(['completed', 'rolled_back', 'aborted', 'failed']);

interface KillState {
  readonly name: string;
  /** Issue this command when `before` holds (pause or rollback), then kill in `when`. */
  readonly command?: { readonly type: 'pause' | 'rollback'; readonly before: (d: RolloutDetail) => boolean };
  readonly when: (d: RolloutDetail) => boolean;
  readonly ends: 'completed' | 'rolled_back';
}

const moving = (d: RolloutDetail) =>
  d.rollout.counts.assigned + d.rollout.counts.downloading + d.rollout.counts.trial > 0;
const at = (stage: string, f: (d: RolloutDetail) => boolean) => (d: RolloutDetail) =>
  d.rollout.phase === 'running' && d.rollout.stage === stage && f(d);
const holding = (d: RolloutDetail) => d.rollout.counts.holding > 0;

export const KILL_STATES: readonly KillState[] = [
  { name: 'canary starting', when: at('canary', moving), ends: 'completed' },
  { name: 'canary holding', when: at('canary', holding), ends: 'completed' },
  { name: 'batch starting', when: at('batch', moving), ends: 'completed' },
  { name: 'batch holding', when: at('batch', holding), ends: 'completed' },
  { name: 'fleet starting', when: at('fleet', moving), ends: 'completed' },
  { name: 'fleet holding', when: at('fleet', holding), ends: 'completed' },
  { name: 'completed', when: (d) => d.rollout.phase === 'completed', ends: 'completed' },
  {
    name: 'paused',
    command: { type: 'pause', before: at('batch', holding) },
    when: (d) => d.rollout.phase === 'paused',
    ends: 'completed',
  },
  {
    name: 'rolling back',
    command: { type: 'rollback', before: at('batch', holding) },
    when: (d) => d.rollout.phase === 'rolling_back',
    ends: 'rolled_back',
  },
  {
    name: 'rolled back',
    command: { type: 'rollback', before: at('canary', holding) },
    when: (d) => d.rollout.phase === 'rolled_back',
    ends: 'rolled_back',
  },
];

export interface ManagerKillOptions {
  readonly seed: number;
  readonly devices?: number;
  /** Kill states to run (names); default all. */
  readonly states?: readonly string[];
  /** Times through the list (the restart delay is drawn anew each time). Default 1. */
  readonly rounds?: number;
  readonly log?: (line: string) => void;
}

function payloadFiles(tag: number): PayloadFile[] {
  return [{ path: 'runtime.json', mode: 0o644, data: Buffer.from(JSON.stringify({ mode: 'healthy', tag })) }];
}

/** The generation of a desired document, read without verifying it (the agent verifies). */
function generationOf(payload: Uint8Array): number | null {
  const c = peekCose(payload, { maxBytes: 65_536 });
  if (!c.ok) return null;
  const d = decodeCbor(c.value.payload, { maxBytes: 65_536 });
  const g = d.ok ? (normalizeInts(d.value) as { generation?: unknown }).generation : null;
  return typeof g === 'number' ? g : null;
}

export async function runManagerKill(o: ManagerKillOptions): Promise<AreaResult> {
  const tally = new Tally('manager kill per rollout state', 'kill point');
  const r = rng(o.seed);
  const dir = mkdtempSync(join(tmpdir(), 'fg-mkill-'));
  mkdirSync(join(dir, 'data'), { recursive: true });
  const m = await ManagerProcess.create(dir);
  let fleet: SimFleet | null = null;
  const regressions: string[] = [];
  const kinds: string[] = [];
  try {
    await m.start();
    const key: SigningKey = unwrap(parseSigningKeyPem(readFileSync(m.info?.keys.release_private as string, 'utf8')));
    let seq = 0;
    const push = () => {
      seq++;
      return pushSnapshot(m, key, 'mkill', seq, payloadFiles(seq));
    };
    const n = o.devices ?? 24;
    const specs = generateDevices({ count: n, sites: 12, prefix: 'mk' });
    const enrolled: EnrolledDevice[] = [];
    for (const spec of specs) {
      const res = await m.api<{ config: Record<string, unknown> }>('POST', '/api/v1/devices', {
        id: spec.id,
        site: spec.site,
        hardware: 'gw-sim',
      });
      enrolled.push({ spec, config: res.config });
    }
    const f = new SimFleet({
      devices: enrolled,
      logger: pino({ level: 'silent' }),
      telemetryIntervalS: 1,
      trialGraceMs: 1000,
      linkBackoff: { baseMs: 200, capMs: 1000 },
    });
    fleet = f;
    await f.start();
    await f.waitFor('connected', () => f.counts().connected === n, 60_000);
    const highest = new Map<string, number>();
    for (const d of f.devices) {
      d.agent.link.on('desired', (payload: Buffer) => {
        const g = generationOf(payload);
        if (g === null) return;
        const prev = highest.get(d.id) ?? 0;
        if (g < prev) regressions.push(`${d.id} received generation ${g} after ${prev}`);
        else highest.set(d.id, g);
      });
    }
    const active = (id: string) => settledOn(f, id);
    let current = await push();
    await m.api('POST', '/api/v1/assignments', {
      devices: specs.map((s) => s.id),
      snapshot: current,
      trial: { window_s: 1 },
    });
    await waitFor('baseline everywhere', () => active(current) === n, 120_000);

    const one = KILL_STATES.filter((s) => !o.states || o.states.includes(s.name));
    const states = Array.from({ length: o.rounds ?? 1 }, () => one).flat();
    for (const [i, s] of states.entries()) {
      const label = `kill while ${s.name}${(o.rounds ?? 1) > 1 ? ` (round ${Math.floor(i / one.length) + 1})` : ''}`;
      const p: string[] = [];
      const before = regressions.length;
      try {
        const target = await push();
        const plan = [
          `snapshot: ${target}`,
          'trial: 1s',
          'hold: 2s',
          'deadline: 2m',
          'stages:',
          '  - canary: 1 site',
          '  - batch: 5 sites',
          '  - fleet: all',
          '',
        ].join('\n');
        const created = await m.api<RolloutDetail>('POST', '/api/v1/rollouts', { plan });
        const id = created.rollout.id;
        const get = () => m.api<RolloutDetail>('GET', `/api/v1/rollouts/${id}?devices=true`);
        if (s.command) {
          const cmd = s.command;
          await waitForAsync(`${s.name}: before ${cmd.type}`, async () => cmd.before(await get()), 120_000);
          await m.api('POST', `/api/v1/rollouts/${id}/${cmd.type}`, { reason: 'reliability' });
        }
        await waitForAsync(`${s.name}`, async () => s.when(await get()), 120_000);
        await m.kill9();
        await sleep(r.int(100, 2_000));
        await m.start();
        if (s.command?.type === 'pause')
          await m.api('POST', `/api/v1/rollouts/${id}/resume`, { reason: 'reliability' });
        const end = await waitForAsync(
          'terminal',
          async () => {
            const d = await get();
            return TERMINAL.has(d.rollout.phase) ? d : false;
          },
          180_000,
        );
        if (end.rollout.phase !== s.ends)
          p.push(`ended ${end.rollout.phase} (${end.rollout.reason}), expected ${s.ends}`);
        const expected = s.ends === 'completed' ? target : current;
        try {
          await waitFor('devices settled', () => active(expected) === n, 60_000);
        } catch {
          const off = f.devices
            .map((d) => ({ id: d.id, r: d.agent.runner.reported() }))
            .filter(
              ({ r }) => r.slots[r.active_slot].snapshot !== expected || !['committed', 'reverted'].includes(r.phase),
            )
            .map(({ id, r }) => `${id}: ${r.phase} on ${r.slots[r.active_slot].snapshot?.slice(0, 8)}`);
          p.push(`${active(expected)}/${n} devices run ${expected.slice(0, 8)} (${off.slice(0, 3).join(', ')})`);
        }
        if (s.ends === 'completed') current = target;
        const ledger = await m.api<{ events: { kind: string; stage: string | null; device: string | null }[] }>(
          'GET',
          `/api/v1/rollouts/${id}/events?limit=10000`,
        );
        p.push(...countedOnce(end, ledger.events));
        kinds.push(...ledger.events.map((e) => e.kind));
      } catch (e) {
        p.push(`harness: ${(e as Error).message}`);
        if (!m.alive) await m.start().catch(() => undefined);
      }
      p.push(...regressions.slice(before));
      const ok = tally.record(p, label);
      o.log?.(`${ok ? 'ok  ' : 'FAIL'} ${label}${ok ? '' : `: ${p.join('; ')}`}`);
    }
  } finally {
    await fleet?.stop().catch(() => undefined);
    await m.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  tally.notes.seed = o.seed;
  tally.notes.devices = o.devices ?? 24;
  tally.notes.ledgerKinds = [...new Set(kinds)].sort();
  return tally.result();
}

/** Each device once in the rollout, counts adding up, no device-level ledger record twice. */
function countedOnce(
  d: RolloutDetail,
  ledger: readonly { kind: string; stage: string | null; device: string | null }[],
): string[] {
  const p: string[] = [];
  const ids = (d.devices ?? []).map((x) => x.id);
  if (new Set(ids).size !== ids.length) p.push('a device is listed twice');
  if (ids.length !== d.rollout.devices) p.push(`${ids.length} devices listed, rollout counts ${d.rollout.devices}`);
  const sum = Object.values(d.rollout.counts).reduce((a, b) => a + b, 0);
  if (sum !== d.rollout.devices) p.push(`status counts add up to ${sum}, not ${d.rollout.devices}`);
  const seen = new Map<string, number>();
  for (const e of ledger) {
    if (!e.device || !/^device\.(succeeded|failed|committed)$|^rollback\.confirmed$/.test(e.kind)) continue;
    const k = `${e.kind}/${e.stage}/${e.device}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  const twice = [...seen].filter(([, c]) => c > 1).map(([k]) => k);
  if (twice.length) p.push(`counted twice in the ledger: ${twice.slice(0, 5).join(', ')}`);
  return p;
}

async function waitForAsync<T>(what: string, fn: () => Promise<T | false | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v !== false && v !== undefined) return v;
    } catch {
      // the manager may be restarting
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}
