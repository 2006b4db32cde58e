/**
 * Area "soak": a real manager process and N simulated devices (simulator/: real agents, in-memory
 * slot stores, simulated runtimes) for a while with telemetry, two rollouts and one rollback.
 * Checks: no lost messages, counted in vs out — every health and telemetry message a device sent
 * in its session arrived at the manager (its own per-session counters), every update event a
 * device's runner built is in the manager's ledger — and the manager's memory (RSS) flat over
 * the steady part.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { DeviceDetail } from '../manager/fleet-types.js';
import type { RolloutDetail } from '../manager/rollout-service.js';
import { parseSigningKeyPem } from '../protocol/keys.js';
import type { EventMessage } from '../protocol/messages.js';
import { unwrap } from '../protocol/result.js';
import { type EnrolledDevice, generateDevices, SimFleet } from '../simulator/index.js';
import { sleep, waitFor } from './fleet.js';
import { ManagerProcess } from './manager-process.js';
import { type AreaResult, Tally } from './report.js';
import { pushSnapshot, settledOn } from './sim-campaign.js';

export interface SoakOptions {
  readonly seed: number;
  readonly devices: number;
  readonly durationS: number;
  readonly telemetryIntervalS?: number;
  /** Hold of each rollout stage (s). Default 5. */
  readonly holdS?: number;
  readonly log?: (line: string) => void;
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export async function runSoak(o: SoakOptions): Promise<AreaResult> {
  const tally = new Tally(
    `soak (${o.devices.toLocaleString('en-US')} devices, ${Math.round(o.durationS / 60)} min)`,
    'check',
  );
  const dir = mkdtempSync(join(tmpdir(), 'fg-soak-'));
  mkdirSync(join(dir, 'data'), { recursive: true });
  const m = await ManagerProcess.create(dir);
  let fleet: SimFleet | null = null;
  const rss: { t: number; mib: number }[] = [];
  let sampler: NodeJS.Timeout | undefined;
  const log = o.log ?? (() => {});
  try {
    await m.start();
    const pid = m.info?.pid as number;
    const key = unwrap(parseSigningKeyPem(readFileSync(m.info?.keys.release_private as string, 'utf8')));
    let seq = 0;
    const push = () => {
      seq++;
      return pushSnapshot(m, key, 'soak', seq, [
        { path: 'runtime.json', mode: 0o644, data: Buffer.from(JSON.stringify({ mode: 'healthy', seq })) },
      ]);
    };
    const sites = Math.max(12, Math.ceil(o.devices / 100));
    const specs = generateDevices({ count: o.devices, sites, prefix: 'soak' });
    const enrolled: EnrolledDevice[] = [];
    for (let i = 0; i < specs.length; i += 16) {
      const batch = specs.slice(i, i + 16);
      const got = await Promise.all(
        batch.map((spec) =>
          m.api<{ config: Record<string, unknown> }>('POST', '/api/v1/devices', {
            id: spec.id,
            site: spec.site,
            hardware: 'gw-sim',
          }),
        ),
      );
      got.forEach((g, k) => {
        enrolled.push({ spec: batch[k] as (typeof batch)[number], config: g.config });
      });
    }
    log(`${o.devices} devices enrolled`);
    const f = new SimFleet({
      devices: enrolled,
      logger: pino({ level: 'silent' }),
      connectRate: 400,
      telemetryIntervalS: o.telemetryIntervalS ?? 5,
      trialGraceMs: 1000,
      linkBackoff: { baseMs: 500, capMs: 5000 },
    });
    fleet = f;
    // Out: what each device's agent sent, by session; events by session and seq.
    const sent = new Map<string, number>();
    const produced: { device: string; m: EventMessage }[] = [];
    const t0 = Date.now();
    for (const d of f.devices) {
      const link = d.agent.link;
      const publish = link.publish.bind(link);
      link.publish = (ch, payload) =>
        publish(ch, payload).then(() => {
          if (ch === 'health' || ch === 'telemetry') {
            const k = `${d.id}/${ch}/${link.session}`;
            sent.set(k, (sent.get(k) ?? 0) + 1);
          }
        });
      const runner = d.agent.runner as unknown as { eventMessage: (...a: unknown[]) => EventMessage };
      const build = runner.eventMessage.bind(d.agent.runner);
      runner.eventMessage = (...a) => {
        const msg = build(...a);
        produced.push({ device: d.id, m: msg });
        return msg;
      };
    }
    await f.start();
    await f.waitFor('connected', () => f.counts().connected === o.devices, 300_000);
    log(`connected after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    sampler = setInterval(() => rss.push({ t: Date.now() - t0, mib: rssMiB(pid) }), 5_000);

    const committedOn = (id: string) => settledOn(f, id);
    const v1 = await push();
    await m.api('POST', '/api/v1/assignments', {
      devices: specs.map((s) => s.id),
      snapshot: v1,
      trial: { window_s: 1 },
    });
    await waitFor('baseline committed', () => committedOn(v1) === o.devices, 600_000);
    log(`baseline committed after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const rollout = async (target: string, rollbackAt?: string): Promise<RolloutDetail> => {
      const plan = [
        `snapshot: ${target}`,
        'trial: 1s',
        `hold: ${o.holdS ?? 5}s`,
        'deadline: 5m',
        'in_flight: null',
        'stages:',
        '  - canary: 1 site',
        '  - batch: 10%',
        '  - fleet: all',
        '',
      ].join('\n');
      const c = await m.api<RolloutDetail>('POST', '/api/v1/rollouts', { plan });
      const id = c.rollout.id;
      let asked = false;
      return waitFor2(async () => {
        const d = await m.api<RolloutDetail>('GET', `/api/v1/rollouts/${id}`);
        if (rollbackAt && !asked && d.rollout.stage === rollbackAt && d.rollout.counts.holding > 0) {
          asked = true;
          await m.api('POST', `/api/v1/rollouts/${id}/rollback`, { reason: 'soak' });
        }
        return ['completed', 'rolled_back', 'aborted', 'failed'].includes(d.rollout.phase) ? d : false;
      }, 900_000);
    };
    const v2 = await push();
    const a = await rollout(v2);
    tally.record(
      a.rollout.phase === 'completed' ? [] : [`ended ${a.rollout.phase}: ${a.rollout.reason}`],
      'rollout 1 completes',
    );
    log(`rollout 1 ${a.rollout.phase} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const v3 = await push();
    const b = await rollout(v3, 'batch');
    const back = await waitFor(
      'rolled back devices settle',
      () => committedOn(v2) === o.devices || false,
      300_000,
    ).catch(() => false);
    tally.record(
      b.rollout.phase === 'rolled_back' && back
        ? []
        : [`ended ${b.rollout.phase}; ${committedOn(v2)}/${o.devices} on the baseline`],
      'rollout 2 rolls back to the baseline',
    );
    log(`rollout 2 ${b.rollout.phase} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // Steady telemetry until the end.
    const steadyFrom = Date.now() - t0;
    const left = o.durationS * 1000 - (Date.now() - t0);
    if (left > 0) await sleep(left);
    clearInterval(sampler);
    sampler = undefined;

    // Quiesce: stop every agent's publishing timer, let in-flight messages land, then count.
    for (const d of f.devices) clearInterval((d.agent as unknown as { publishTimer?: NodeJS.Timeout }).publishTimer);
    await sleep(3_000);
    const p: string[] = [];
    let out = 0;
    let received = 0;
    let missing = 0;
    for (const d of f.devices) {
      const { device: view } = await m.api<{ device: DeviceDetail }>('GET', `/api/v1/devices/${d.id}`);
      for (const ch of ['health', 'telemetry'] as const) {
        const a2 = view.arrival[ch];
        const n = sent.get(`${d.id}/${ch}/${a2.session}`) ?? 0;
        out += n;
        received += a2.received;
        missing += a2.missing;
        if (a2.received !== n && p.length < 5)
          p.push(`${d.id} ${ch}: sent ${n} in session ${a2.session}, manager received ${a2.received}`);
      }
    }
    tally.record(
      missing === 0 && out === received
        ? []
        : [`health+telemetry: ${out} sent, ${received} received, ${missing} missing`, ...p],
      'no health or telemetry message lost',
    );
    const ledger = new Set<string>();
    let after = 0;
    for (;;) {
      const page = await m.api<{
        events: { id: number; device: string | null; data: { session?: number; seq?: number } }[];
      }>('GET', `/api/v1/events?kind=update&after=${after}&limit=10000`);
      for (const e of page.events) ledger.add(`${e.device}/${e.data.session}/${e.data.seq}`);
      if (page.events.length < 10_000) break;
      after = page.events.at(-1)?.id ?? after;
    }
    const lost = produced.filter((x) => !ledger.has(`${x.device}/${x.m.session}/${x.m.seq}`));
    tally.record(lost.length ? [`${lost.length} of ${produced.length} events lost`] : [], 'no update event lost');
    const steady = rss.filter((s) => s.t >= steadyFrom);
    const q = Math.max(1, Math.floor(steady.length / 4));
    const first = median(steady.slice(0, q).map((s) => s.mib));
    const last = median(steady.slice(-q).map((s) => s.mib));
    const growth = last - first;
    tally.record(
      growth <= Math.max(25, first * 0.1)
        ? []
        : [`manager RSS ${first.toFixed(0)} -> ${last.toFixed(0)} MiB over the steady part`],
      'manager memory flat',
    );
    Object.assign(tally.notes, {
      seed: o.seed,
      devices: o.devices,
      durationS: o.durationS,
      messagesSent: out,
      messagesReceived: received,
      missing,
      events: produced.length,
      eventsLost: lost.length,
      rssMiB: {
        steadyStart: Math.round(first),
        steadyEnd: Math.round(last),
        max: Math.round(Math.max(...rss.map((s) => s.mib))),
      },
      rssSamples: rss.map((s) => [Math.round(s.t / 1000), Math.round(s.mib)]),
    });
  } finally {
    clearInterval(sampler);
    await fleet?.stop().catch(() => undefined);
    await m.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
  return tally.result();
}

async function waitFor2<T>(fn: () => Promise<T | false>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v !== false) return v;
    } catch {
      // transient API error
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`);
    await sleep(250);
  }
}
