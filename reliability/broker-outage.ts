/**
 * Area "broker restart and partitions" (DESIGN.md: "If the device cannot reach the broker within
 * the trial window after a switch, it reverts"; QoS 1 `events` feed the outcome ledger):
 *
 *  - cut at switch, longer than the trial window   -> reverts, FG_TRIAL_OFFLINE (category offline)
 *  - cut at switch, back within the window          -> commits
 *  - cut mid-trial (broker reached), longer than the window -> commits on its local gates
 *  - cut mid-download                               -> the download resumes, commits
 *  - manager (and its embedded broker) restarted during a download -> resumes, commits
 *  - manager down during a trial, longer than the window -> commits, reported when it is back
 *
 * Every case then checks that nothing was lost: each event message the device's runner built is
 * in the manager's ledger once (matched by session and seq), and the manager shows the device's
 * true end state. Devices are in-process agents behind a TcpProxy each (reliability/inprocess-agent.ts).
 */
import { type Bundle, type Fleet, sleep, TRIAL, waitFor } from './fleet.js';
import { hung, type InProcessAgent, installInProcess } from './inprocess-agent.js';
import { type AreaResult, Tally } from './report.js';
import { type Rng, rng } from './rng.js';

const GRACE_MS = 1000;
const WINDOW_MS = (TRIAL.window_s ?? 2) * 1000;

export interface OutageOptions {
  readonly fleet: Fleet;
  readonly seed: number;
  readonly rounds: number;
  /** Partition cases to run (default: all four); the manager restart cases always run. */
  readonly cases?: readonly CaseName[];
  readonly log?: (line: string) => void;
}

interface Expect {
  readonly end: 'committed' | 'reverted';
  readonly snapshot: string;
  readonly code?: string;
}

export type CaseName = 'cut-at-switch-long' | 'cut-at-switch-short' | 'cut-mid-trial-long' | 'cut-mid-download';

class Device {
  constructor(
    readonly a: InProcessAgent,
    readonly fleet: Fleet,
  ) {}

  get id(): string {
    return this.a.id;
  }

  active(): string | null {
    const boot = this.a.store.boot();
    return this.a.store.slot(boot.active).snapshot;
  }

  /** Resolves at the first save of `phase` from now on, running `fn` synchronously there. */
  at(phase: string, fn: () => void = () => {}): Promise<void> {
    return new Promise((resolve) => {
      const off = this.a.onPhase((p) => {
        if (p !== phase) return;
        off();
        fn();
        resolve();
      });
    });
  }

  cut(): void {
    this.a.proxy.cut();
    // Drop our own socket too, so the agent knows at once (as a dead network interface would tell it).
    this.a.agent.link.dropConnection();
  }

  /** The agent's own end state, then the manager's view of it. */
  async ended(e: Expect, ms: number): Promise<string[]> {
    const p: string[] = [];
    try {
      await waitFor(`${this.id} ${e.end}`, () => this.a.agent.runner.current.phase === e.end, ms);
    } catch {
      return [`agent stayed in ${this.a.agent.runner.current.phase}, expected ${e.end}`];
    }
    if (this.active() !== e.snapshot) p.push(`runs ${this.active()?.slice(0, 8)}, expected ${e.snapshot.slice(0, 8)}`);
    const f = this.a.agent.runner.current.lastFailure;
    if (e.code && f?.code !== e.code) p.push(`last failure ${f?.code ?? 'none'}, expected ${e.code}`);
    if (!e.code && e.end === 'committed' && f) p.push(`unexpected failure ${f.code}`);
    return p;
  }

  /** The manager sees the end state and every event the runner built. */
  async reported(e: Expect, ms = 15_000): Promise<string[]> {
    let last: string[] = [];
    try {
      await waitFor(
        `${this.id} reported`,
        () => {
          last = this.ledgerProblems(e);
          return last.length === 0;
        },
        ms,
      );
    } catch {
      return last;
    }
    return [];
  }

  private ledgerProblems(e: Expect): string[] {
    const p: string[] = [];
    if (!this.fleet.up) return ['manager down'];
    const view = this.fleet.device(this.id);
    const r = view.reported;
    if (r?.phase !== e.end || r.slots[r.active_slot].snapshot !== e.snapshot)
      p.push(`manager sees ${r?.phase} on ${r ? r.slots[r.active_slot].snapshot?.slice(0, 8) : '-'}`);
    if (e.code && (r?.last_failure?.code !== e.code || r.last_failure.category !== 'offline'))
      p.push(`manager sees failure ${r?.last_failure?.code}/${r?.last_failure?.category}`);
    const ledger = new Set(
      this.fleet.stack.service
        .events({ device: this.id, kind: 'update', limit: 10_000 })
        .map((ev) => `${ev.data.session}/${ev.data.seq}`),
    );
    const lost = this.a.produced.filter((m) => !ledger.has(`${m.session}/${m.seq}`));
    if (lost.length)
      p.push(
        `${lost.length} of ${this.a.produced.length} events lost: ${lost.map((m) => `${m.from}->${m.to}`).join(', ')}`,
      );
    return p;
  }
}

async function newDevice(fleet: Fleet, name: string): Promise<Device> {
  return new Device(await installInProcess(fleet, name, { trialGraceMs: GRACE_MS }), fleet);
}

/** One partition case on one device; returns its problems. */
async function partitionCase(d: Device, name: CaseName, r: Rng): Promise<string[]> {
  const f = d.fleet;
  const before = d.active() as string;
  const b: Bundle = await f.push(f.bundle('healthy', {}, name === 'cut-mid-download' ? 2 * 1024 * 1024 : 0));
  let healAfter = 0;
  let armed: Promise<void>;
  let expect: Expect = { end: 'committed', snapshot: b.id };
  switch (name) {
    case 'cut-at-switch-long':
      armed = d.at('switching', () => d.cut());
      healAfter = WINDOW_MS + GRACE_MS + r.int(500, 2000);
      expect = { end: 'reverted', snapshot: before, code: 'FG_TRIAL_OFFLINE' };
      break;
    case 'cut-at-switch-short':
      armed = d.at('switching', () => d.cut());
      healAfter = Math.round(WINDOW_MS * (0.2 + 0.4 * r.next()));
      break;
    case 'cut-mid-trial-long':
      armed = d.at('trial').then(async () => {
        await sleep(r.int(200, 600));
        d.cut();
      });
      healAfter = WINDOW_MS + GRACE_MS + r.int(500, 2000);
      break;
    case 'cut-mid-download':
      armed = d.at('downloading').then(async () => {
        await sleep(r.int(20, 150));
        d.cut();
      });
      healAfter = r.int(1000, 3000);
      break;
  }
  await f.assign([d.id], b);
  await armed;
  await sleep(healAfter);
  // Long cuts must decide while still cut off: the revert (or the offline commit) needs no broker.
  const p = name.endsWith('-long') ? await d.ended(expect, 10_000) : [];
  d.a.proxy.heal();
  p.push(...(await d.ended(expect, 30_000)));
  p.push(...(await d.reported(expect)));
  return [...new Set(p)];
}

/** The manager restarts while one device downloads and another is on trial (down longer than the window). */
async function restartCase(dl: Device, tr: Device, r: Rng): Promise<{ dl: string[]; tr: string[] }> {
  const f = dl.fleet;
  const big = await f.push(f.bundle('healthy', {}, 3 * 1024 * 1024));
  const small = await f.push(f.bundle('healthy'));
  const onTrial = tr.at('trial');
  await f.assign([tr.id], small);
  await onTrial;
  const downloading = dl.at('downloading');
  await f.assign([dl.id], big);
  await downloading;
  await sleep(r.int(10, 100));
  await f.stopManager();
  await sleep(WINDOW_MS + GRACE_MS + r.int(500, 1500));
  await f.startManager();
  const e1: Expect = { end: 'committed', snapshot: big.id };
  const e2: Expect = { end: 'committed', snapshot: small.id };
  const p1 = await dl.ended(e1, 40_000);
  const p2 = await tr.ended(e2, 20_000);
  p1.push(...(await dl.reported(e1)));
  p2.push(...(await tr.reported(e2)));
  return { dl: p1, tr: p2 };
}

export async function runBrokerOutage(o: OutageOptions): Promise<AreaResult> {
  const tally = new Tally('broker restart / partition', 'outage');
  const r = rng(o.seed);
  const cases: readonly CaseName[] = o.cases ?? [
    'cut-at-switch-long',
    'cut-at-switch-short',
    'cut-mid-trial-long',
    'cut-mid-download',
  ];
  const devices: Device[] = [];
  try {
    devices.push(
      ...(await Promise.all(
        [...cases, 'restart-download', 'restart-trial'].map((c) => newDevice(o.fleet, `out-${c}`)),
      )),
    );
    for (let round = 0; round < o.rounds; round++) {
      const results = await Promise.all(
        cases.map((c, i) => partitionCase(devices[i] as Device, c, r).catch((e: Error) => [`harness: ${e.message}`])),
      );
      cases.forEach((c, i) => {
        const ok = tally.record(results[i] ?? [], `round ${round}: ${c}`);
        o.log?.(`${ok ? 'ok  ' : 'FAIL'} round ${round}: ${c}${ok ? '' : `: ${results[i]?.join('; ')}`}`);
      });
      const rc = await restartCase(devices[cases.length] as Device, devices[cases.length + 1] as Device, r).catch(
        (e: Error) => ({
          dl: [`harness: ${e.message}`],
          tr: [`harness: ${e.message}`],
        }),
      );
      for (const [label, p] of [
        ['manager restart during download', rc.dl],
        ['manager down during trial, longer than the window', rc.tr],
      ] as const) {
        const ok = tally.record(p, `round ${round}: ${label}`);
        o.log?.(`${ok ? 'ok  ' : 'FAIL'} round ${round}: ${label}${ok ? '' : `: ${p.join('; ')}`}`);
      }
    }
  } finally {
    for (const d of devices) await d.a.stop().catch(() => undefined);
  }
  const produced = devices.reduce((n, d) => n + d.a.produced.length, 0);
  tally.notes.agentStopsHung = hung.count;
  tally.notes.seed = o.seed;
  tally.notes.eventsProduced = produced;
  return tally.result();
}
