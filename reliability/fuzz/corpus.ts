/**
 * Valid inputs of every decoder, the seeds the mutators start from: JSON observability messages,
 * fetch and chunk messages, signed manifests, desired documents, bundles, payloads, gate
 * expressions, topics and PEM keys. Keys are generated per run; nothing here is a fixture.
 */
import { buildBundle, encodePayload, type PayloadFile } from '../../protocol/bundle.js';
import { encodeCbor } from '../../protocol/cbor.js';
import { encodeCanonical } from '../../protocol/cbor-canonical.js';
import { signCose } from '../../protocol/cose.js';
import { signDesired } from '../../protocol/desired.js';
import {
  generateSigningKey,
  publicKeyToPem,
  publicOf,
  type SigningKey,
  signingKeyToPem,
  type TrustStore,
  trustStore,
} from '../../protocol/keys.js';
import type { OpenedManifest } from '../../protocol/manifest.js';
import {
  type DesiredDocument,
  EventMessage,
  encodeChunk,
  encodeFetch,
  encodeJsonMessage,
  HealthMessage,
  ReportedMessage,
  StateMessage,
  TelemetryMessage,
  type TrialSpec,
} from '../../protocol/messages.js';
import { DEFAULT_PREFIX } from '../../protocol/topics.js';

export const DEVICE = 'gw-fuzz-1';
const NOW = 1_767_225_600_000; // 2026-01-01

const TRIAL: TrialSpec = {
  window_s: 60,
  health: 'runtime_healthy && adapter_connected',
  telemetry: 'gap < 10s && drops == 0',
  crash_loop: { restarts: 3, within_s: 60 },
  max_agent_starts: 3,
};

export interface Corpus {
  readonly release: SigningKey;
  readonly manager: SigningKey;
  readonly stranger: SigningKey;
  readonly releaseTrust: TrustStore;
  readonly managerTrust: TrustStore;
  readonly now: number;
  /** JSON messages by channel (encoded). */
  readonly json: {
    readonly state: Uint8Array[];
    reported: Uint8Array[];
    health: Uint8Array[];
    telemetry: Uint8Array[];
    events: Uint8Array[];
  };
  readonly jsonValues: unknown[];
  readonly fetch: Uint8Array[];
  readonly chunk: Uint8Array[];
  readonly manifests: OpenedManifest[];
  readonly manifestValues: unknown[];
  readonly desired: Uint8Array[];
  readonly desiredDocs: DesiredDocument[];
  readonly bundles: Uint8Array[];
  readonly bundleParts: { manifest: Uint8Array; payload: Uint8Array }[];
  readonly payloads: Uint8Array[];
  readonly payloadValues: unknown[];
  readonly gates: string[];
  readonly topics: string[];
  readonly pems: string[];
  /** The snapshot the handler targets download: id, size, payload. */
  readonly snapshot: { id: string; size: number; payload: Uint8Array; bundle: Uint8Array };
}

const enc = new TextEncoder();

function files(tag: string, extra = 0): PayloadFile[] {
  const f: PayloadFile[] = [
    { path: 'runtime.json', mode: 0o644, data: enc.encode(JSON.stringify({ tag })) },
    { path: 'flows/line1.json', mode: 0o644, data: enc.encode(JSON.stringify({ tag, nodes: [1, 2, 3] })) },
    { path: 'bin/run.sh', mode: 0o755, data: enc.encode(`#!/bin/sh\necho ${tag}\n`) },
  ];
  if (extra)
    f.push({ path: 'blob.bin', mode: 0o600, data: new Uint8Array(extra).map((_, i) => (i * 7 + tag.length) & 0xff) });
  return f;
}

export function buildCorpus(): Corpus {
  const release = generateSigningKey();
  const manager = generateSigningKey();
  const stranger = generateSigningKey();
  const snap = (tag: string, seq: number, extra = 0, key = release) =>
    buildBundle(
      files(tag, extra),
      {
        name: 'line-logic',
        version: `1.${seq}.0`,
        seq,
        created: NOW - seq * 1000,
        run: { command: 'node', args: ['runtime.js'], env: { MODE: tag }, probe: { type: 'stdout' } },
        acceptance: seq % 2 ? { command: 'node', args: ['acceptance.js'], timeout_s: 30 } : null,
        compat: { hardware: seq % 3 ? [] : ['gw-x86'], adapters: seq % 2 ? [] : ['modbus'] },
      },
      key,
    );
  const bundles = [snap('a', 1, 300_000), snap('b', 2), snap('c', 3, 40), snap('d', 4, 0, stranger)];
  const main = bundles[0] as (typeof bundles)[number];
  const ids = bundles.map((b) => b.opened.id);
  const id = ids[0] as string;
  const desiredDocs: DesiredDocument[] = bundles.slice(0, 3).map((b, i) => ({
    v: 1,
    device: DEVICE,
    generation: NOW + i,
    issued: NOW - 1000,
    expires: NOW + 86_400_000,
    rollout: i === 0 ? null : `r-${i}`,
    stage: i === 0 ? null : 'canary',
    manifest: b.opened.cose,
    trial: TRIAL,
  }));
  const ts = NOW;
  const reported = {
    generation: NOW,
    active_slot: 'A' as const,
    slots: { A: { snapshot: id, state: 'active' as const }, B: { snapshot: ids[1] ?? null, state: 'good' as const } },
    phase: 'downloading' as const,
    target: ids[2] ?? null,
    rollout: 'r-1',
    progress: { bytes: 1000, total: 4000 },
    last_failure: {
      category: 'download' as const,
      code: 'FG_DOWNLOAD_TIMEOUT',
      detail: 'no answer',
      snapshot: id,
      generation: 3,
    },
    session: 7,
    ts,
  };
  const health = {
    seq: 3,
    session: 7,
    runtime_healthy: true,
    adapter_connected: false,
    restarts: 1,
    uptime: 12.5,
    snapshot: id,
    ts,
  };
  const telemetry = {
    seq: 4,
    session: 7,
    gap: 0.4,
    drops: 0,
    rate: 9.8,
    kpi: { cycle_time: 1.2, throughput: 50 },
    protocol_errors: 0,
    window: 60,
    snapshot: id,
    ts,
  };
  const event = {
    session: 7,
    seq: 9,
    ts,
    generation: NOW,
    rollout: 'r-1',
    snapshot: id,
    from: 'trial' as const,
    to: 'reverting' as const,
    failure: { category: 'health_gate' as const, code: 'FG_HEALTH_GATE_FAILED', detail: 'adapter lost' },
    detail: 'gate',
  };
  const state = [
    { status: 'online' as const, session: 7, ts, agent: '0.1.0' },
    { status: 'lost' as const, session: 6 },
  ];
  const jsonValues: unknown[] = [...state, reported, health, telemetry, event];
  const payload = main.payload;
  const chunkOf = (offset: number, length: number) =>
    encodeChunk({ snapshot: id, offset, total: payload.byteLength, bytes: payload.subarray(offset, offset + length) });
  const manifestValues = bundles.map((b) => ({ ...b.opened.manifest }));
  const payloadValues: unknown[] = [
    files('a').map((f) => [f.path, f.mode, f.data]),
    files('z', 10).map((f) => [f.path, f.mode, f.data]),
  ];
  return {
    release,
    manager,
    stranger,
    releaseTrust: trustStore([publicOf(release)]),
    managerTrust: trustStore([publicOf(manager)]),
    now: NOW,
    json: {
      state: state.map((s) => encodeJsonMessage(StateMessage, s)),
      reported: [encodeJsonMessage(ReportedMessage, reported)],
      health: [encodeJsonMessage(HealthMessage, health)],
      telemetry: [encodeJsonMessage(TelemetryMessage, telemetry)],
      events: [encodeJsonMessage(EventMessage, event)],
    },
    jsonValues,
    fetch: [
      encodeFetch({ snapshot: id, offset: 0, length: 65_536 }),
      encodeFetch({ snapshot: id, offset: 131_072, length: 1 }),
      encodeFetch({ snapshot: ids[1] as string, offset: 0, length: 262_144 }),
    ],
    chunk: [
      chunkOf(0, 4096),
      chunkOf(4096, 100),
      encodeChunk({ snapshot: id, offset: 0, error: 'FG_FETCH_RATE_LIMITED', detail: 'slow down' }),
    ],
    manifests: bundles.map((b) => b.opened),
    manifestValues,
    desired: desiredDocs.map((d) => signDesired(d, manager)),
    desiredDocs,
    bundles: bundles.slice(1).map((b) => b.bytes),
    bundleParts: bundles.slice(1).map((b) => ({ manifest: b.opened.cose, payload: b.payload })),
    payloads: [encodePayload(files('a')), encodePayload(files('z', 10))],
    payloadValues,
    gates: [
      'runtime_healthy && adapter_connected',
      'gap < 10s && drops == 0',
      '!(kpi.cycle_time > 1.5 * baseline.cycle_time) || acceptance_suite_passed',
      'rate >= 9.5 && protocol_errors <= 2 && uptime > 1m',
      '(a || b) && !(c == "x") && d != 3.5 && e - f * 2 / 4 < 1h',
    ],
    topics: [
      `${DEFAULT_PREFIX}/devices/${DEVICE}/reported`,
      `${DEFAULT_PREFIX}/devices/${DEVICE}/fetch`,
      `${DEFAULT_PREFIX}/devices/gw-2/events`,
      `${DEFAULT_PREFIX}/manager/state`,
    ],
    pems: [publicKeyToPem(publicOf(release)), signingKeyToPem(manager)],
    snapshot: { id, size: payload.byteLength, payload, bundle: main.bytes },
  };
}

/** Signs a (possibly mutated) value as a COSE_Sign1 the way the real signers do. */
export function signValue(value: unknown, key: SigningKey): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = encodeCanonical(value);
  } catch {
    bytes = encodeCbor(value);
  }
  return signCose(bytes, key);
}
