import { decode as cbor2Decode, diagnose } from 'cbor2';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCbor, decodeJson, encodeCbor } from '../../protocol/cbor.js';
import {
  type ChunkMessage,
  DesiredDocument,
  decodeCborMessage,
  decodeChunk,
  decodeEvent,
  decodeEvents,
  decodeFetch,
  decodeHealth,
  decodeJsonMessage,
  decodeReported,
  decodeState,
  decodeTelemetry,
  EVENTS_PER_MESSAGE_MAX,
  type EventMessage,
  EventMessage as EventSchema,
  encodeChunk,
  encodeEventBatch,
  encodeFetch,
  encodeJsonMessage,
  type FetchMessage,
  type HealthMessage,
  HealthMessage as HealthSchema,
  LIMITS,
  type ReportedMessage,
  ReportedMessage as ReportedSchema,
  type StateMessage,
  StateMessage as StateSchema,
  type TelemetryMessage,
  TelemetryMessage as TelemetrySchema,
} from '../../protocol/messages.js';
import type { Result } from '../../protocol/result.js';

const SNAP = 'ab'.repeat(32);
const SNAP2 = 'cd'.repeat(32);

const state: StateMessage = { status: 'online', session: 7, ts: 1_700_000_000_000, agent: '0.1.0' };
const reported: ReportedMessage = {
  generation: 1_700_000_000_123,
  active_slot: 'B',
  slots: { A: { snapshot: SNAP, state: 'good' }, B: { snapshot: SNAP2, state: 'active' } },
  phase: 'trial',
  target: SNAP2,
  rollout: 'r-42',
  progress: { bytes: 1024, total: 4096 },
  last_failure: { category: 'health_gate', code: 'FG_GATE', detail: 'adapter lost', snapshot: SNAP2, generation: 3 },
  session: 7,
  ts: 1_700_000_000_500,
};
const health: HealthMessage = {
  seq: 12,
  session: 7,
  runtime_healthy: true,
  adapter_connected: false,
  restarts: 1,
  uptime: 12.5,
  snapshot: SNAP,
  ts: 1_700_000_000_600,
};
const telemetry: TelemetryMessage = {
  seq: 13,
  session: 7,
  gap: 1.25,
  drops: 0,
  rate: 10,
  kpi: { cycle_time: 4.2, 'scrap.rate': 0.01 },
  protocol_errors: 0,
  window: 60,
  snapshot: null,
  ts: 1_700_000_000_700,
};
const event: EventMessage = {
  session: 7,
  seq: 3,
  ts: 1_700_000_000_800,
  generation: 5,
  rollout: null,
  snapshot: SNAP,
  from: 'trial',
  to: 'reverting',
  failure: { category: 'crash_loop', code: 'FG_CRASH_LOOP', detail: 'exit 1 x3' },
  detail: 'runtime restarted 3 times in 60 s',
};
const fetchMsg: FetchMessage = { snapshot: SNAP, offset: 65536, length: 65536 };
const chunkData: ChunkMessage = { snapshot: SNAP, offset: 0, total: 5, bytes: new Uint8Array([1, 2, 3, 4, 5]) };
const chunkRefusal: ChunkMessage = { snapshot: SNAP, offset: 0, error: 'FG_NOT_FOUND', detail: 'no such snapshot' };
const desired: DesiredDocument = {
  v: 1,
  device: 'line1-gw-001',
  generation: 1_700_000_000_999,
  issued: 1_700_000_000_000,
  expires: 1_700_000_600_000,
  rollout: 'r-42',
  stage: 'canary',
  manifest: new Uint8Array([0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40]),
  trial: {
    window_s: 60,
    health: 'runtime_healthy && adapter_connected',
    telemetry: 'gap < 10s && drops == 0',
    crash_loop: { restarts: 3, within_s: 60 },
    max_agent_starts: 3,
  },
};

function value<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
  return r.value;
}

function failure<T>(r: Result<T>) {
  if (r.ok) throw new Error(`accepted: ${JSON.stringify(r.value)}`);
  return r.error;
}

/** Byte strings come back as Buffer (a Uint8Array); compare their bytes, not their class. */
function plainBytes(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainBytes(x)]));
  return v;
}

const JSON_DECODERS = {
  state: decodeState,
  reported: decodeReported,
  health: decodeHealth,
  telemetry: decodeTelemetry,
  event: decodeEvent,
  events: decodeEvents,
} as const;
const CBOR_DECODERS = {
  fetch: decodeFetch,
  chunk: decodeChunk,
  desired: (b: Uint8Array) => decodeCborMessage(DesiredDocument, b, LIMITS.desired),
} as const;

describe('round trips', () => {
  it.each([
    ['state', StateSchema, state, decodeState],
    ['reported', ReportedSchema, reported, decodeReported],
    ['health', HealthSchema, health, decodeHealth],
    ['telemetry', TelemetrySchema, telemetry, decodeTelemetry],
    ['event', EventSchema, event, decodeEvent],
  ] as const)('%s (JSON, as bytes and as text)', (_name, schema, msg, decode) => {
    const bytes = encodeJsonMessage(schema as never, msg);
    expect(value((decode as (b: Uint8Array | string) => Result<unknown>)(bytes))).toEqual(msg);
    expect(value((decode as (b: Uint8Array | string) => Result<unknown>)(Buffer.from(bytes).toString()))).toEqual(msg);
    // Observability topics are JSON that mosquitto_sub and Grafana read as they are (DESIGN.md).
    expect(JSON.parse(Buffer.from(bytes).toString())).toEqual(msg);
  });

  it('an events batch: a JSON array of the events as they were encoded, byte for byte', () => {
    const one = encodeJsonMessage(EventSchema, event);
    const two = encodeJsonMessage(EventSchema, { ...event, seq: event.seq + 1, from: 'trial', to: 'committed' });
    const batch = encodeEventBatch([one, two]);
    expect(Buffer.from(batch).toString()).toBe(`[${Buffer.from(one)},${Buffer.from(two)}]`);
    expect(value(decodeEvents(batch)).map((e) => e.to)).toEqual([event.to, 'committed']);
    // One event alone (an object, as agents before batches sent it) is a list of one.
    expect(value(decodeEvents(one))).toEqual([event]);
    expect(value(decodeEvents(encodeEventBatch([one])))).toEqual([event]);
  });

  it('an events batch holds 1 to EVENTS_PER_MESSAGE_MAX events; a bad one is named by its index', () => {
    const one = encodeJsonMessage(EventSchema, event);
    expect(value(decodeEvents(encodeEventBatch(Array(EVENTS_PER_MESSAGE_MAX).fill(one))))).toHaveLength(64);
    expect(failure(decodeEvents(encodeEventBatch(Array(EVENTS_PER_MESSAGE_MAX + 1).fill(one)))).code).toBe('FG_SCHEMA');
    expect(failure(decodeEvents('[]')).code).toBe('FG_SCHEMA');
    const bad = failure(decodeEvents(JSON.stringify([event, { ...event, to: 'rebooting' }])));
    expect([bad.code, bad.message]).toEqual(['FG_SCHEMA', expect.stringContaining(': 1.to: ')]);
  });

  it('fetch (CBOR)', () => {
    expect(value(decodeFetch(encodeFetch(fetchMsg)))).toEqual(fetchMsg);
  });

  it.each([
    ['data', chunkData],
    ['refusal', chunkRefusal],
  ])('chunk %s (CBOR)', (_n, msg) => {
    expect(plainBytes(value(decodeChunk(encodeChunk(msg))))).toEqual(plainBytes(msg));
  });

  it('desired document (CBOR)', () => {
    const decoded = value(CBOR_DECODERS.desired(encodeCbor(desired)));
    expect(plainBytes(decoded)).toEqual(plainBytes(desired));
    expect(decoded.manifest).toBeInstanceOf(Uint8Array);
  });

  it('a JSON message from a newer agent keeps working: unknown fields are dropped', () => {
    const r = value(decodeHealth(JSON.stringify({ ...health, firmware: '2.0' })));
    expect(r).toEqual(health);
  });

  it('property: any valid health and telemetry message round trips', () => {
    const u = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
    const nonNeg = fc.double({ min: 0, max: 1e12, noNaN: true });
    const snapshot = fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: null });
    const h = fc.record({
      seq: u,
      session: u,
      runtime_healthy: fc.boolean(),
      adapter_connected: fc.boolean(),
      restarts: u,
      uptime: nonNeg,
      snapshot,
      ts: u,
    });
    const t = fc.record({
      seq: u,
      session: u,
      gap: nonNeg,
      drops: u,
      rate: nonNeg,
      kpi: fc.dictionary(
        fc.string({ maxLength: 64 }).filter((k) => k !== '__proto__'),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        { maxKeys: 5 },
      ),
      window: fc.double({ min: 0.001, max: 1e6, noNaN: true }),
      snapshot,
      ts: u,
    });
    fc.assert(
      fc.property(h, t, (hm, tm) => {
        // JSON has no -0: it comes back as 0, which is the same number for every consumer.
        const norm = <T>(m: T): T => JSON.parse(JSON.stringify(m));
        expect(value(decodeHealth(encodeJsonMessage(HealthSchema, hm)))).toEqual(norm(hm));
        expect(value(decodeTelemetry(encodeJsonMessage(TelemetrySchema, tm)))).toEqual(norm(tm));
      }),
      { numRuns: 300 },
    );
  });

  it('encoders refuse an invalid message rather than publish it', () => {
    expect(() => encodeJsonMessage(HealthSchema, { ...health, seq: -1 })).toThrow();
    expect(() => encodeFetch({ ...fetchMsg, length: LIMITS.maxChunk + 1 })).toThrow();
  });
});

describe('CBOR on the wire is plain RFC 8949 (an independent decoder reads it)', () => {
  it.each([
    ['fetch', encodeFetch(fetchMsg), fetchMsg],
    ['chunk', encodeChunk(chunkData), chunkData],
    ['desired', encodeCbor(desired), desired],
  ] as const)('%s', (_n, bytes, msg) => {
    // No tags at all: cbor-x's extensions (records 105, typed arrays 64, maps 259) are switched off.
    expect(diagnose(bytes)).not.toMatch(/\b\d+\(/);
    expect(plainBytes(cbor2Decode(bytes))).toEqual(plainBytes(msg));
  });
});

describe('decoders never throw', () => {
  it('on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        for (const decode of Object.values(JSON_DECODERS)) {
          const r = decode(bytes);
          if (!r.ok) expect(['FG_JSON_MALFORMED', 'FG_SCHEMA', 'FG_TOO_LARGE']).toContain(r.error.code);
        }
        for (const decode of Object.values(CBOR_DECODERS)) {
          const r = decode(bytes);
          if (!r.ok) expect(['FG_CBOR_MALFORMED', 'FG_SCHEMA', 'FG_TOO_LARGE']).toContain(r.error.code);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('on random JSON and CBOR values (well-formed but wrong)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        for (const decode of Object.values(JSON_DECODERS)) expect(decode(JSON.stringify(v) ?? 'null').ok).toBe(false);
        for (const decode of Object.values(CBOR_DECODERS)) expect(decode(encodeCbor(v)).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('on mutated and truncated valid messages, and a bad message does not poison the next one', () => {
    const valid = [encodeFetch(fetchMsg), encodeChunk(chunkData), encodeCbor(desired)];
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1, 2),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.boolean(),
        (which, pos, byte, truncate) => {
          const original = valid[which] as Uint8Array;
          const decode = Object.values(CBOR_DECODERS)[which] as (b: Uint8Array) => Result<unknown>;
          const bad = new Uint8Array(original);
          const i = pos % bad.length;
          if (!truncate) bad[i] = byte;
          const input = truncate ? bad.subarray(0, i) : bad;
          const r = decode(input);
          if (truncate) expect(r.ok || r.error.code).toBe('FG_CBOR_MALFORMED');
          // the shared decoder state is clean again
          expect(decode(original).ok).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('on inputs that are not bytes at all', () => {
    for (const v of [undefined, null, 42, {}, [1, 2]]) {
      expect(decodeFetch(v as unknown as Uint8Array).ok).toBe(false);
      expect(decodeHealth(v as unknown as Uint8Array).ok).toBe(false);
      expect(decodeJson(v as unknown as Uint8Array, 100).ok).toBe(false);
    }
  });

  it('on deep nesting (stack exhaustion is a decode error, not a crash)', () => {
    const deepCbor = new Uint8Array(LIMITS.maxChunk).fill(0x81); // [[[[...]]]]
    expect(failure(decodeChunk(deepCbor)).code).toBe('FG_CBOR_MALFORMED');
    const deepJson = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
    expect(decodeHealth(deepJson).ok).toBe(false);
  });
});

describe('malformed input', () => {
  it.each([
    ['empty', new Uint8Array(0)],
    ['two items (RFC 8949 section 5.1: one item)', new Uint8Array([...encodeFetch(fetchMsg), 0x00])],
    ['truncated', encodeFetch(fetchMsg).subarray(0, 10)],
    ['reserved additional information', new Uint8Array([0x1c])],
    ['array longer than JavaScript allows', new Uint8Array([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
  ])('CBOR: %s -> FG_CBOR_MALFORMED', (_n, bytes) => {
    const e = failure(decodeFetch(bytes));
    expect(e.code).toBe('FG_CBOR_MALFORMED');
    expect(e.category).toBe('integrity');
  });

  it.each([
    ['empty', ''],
    ['not JSON', 'online'],
    ['truncated', '{"status":"online"'],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0x7d])],
  ])('JSON: %s -> FG_JSON_MALFORMED', (_n, input) => {
    expect(failure(decodeState(input)).code).toBe('FG_JSON_MALFORMED');
  });

  it('a JSON "__proto__" key stays data and pollutes nothing', () => {
    const r = decodeHealth(`{"__proto__":{"polluted":true},${JSON.stringify(health).slice(1)}`);
    expect(value(r)).toEqual(health);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('a CBOR tag can not stand in for a number (a date tag 1 is not a timestamp)', () => {
    // the value of `offset` wrapped in tag 1 (epoch date): c1 00
    const tagged = encodeCbor({ snapshot: SNAP, offset: 0, length: 1 });
    const at = Buffer.from(tagged).indexOf(Buffer.from('offset')) + 'offset'.length;
    const patched = new Uint8Array([...tagged.subarray(0, at), 0xc1, ...tagged.subarray(at)]);
    expect(value(decodeFetch(tagged))).toEqual({ snapshot: SNAP, offset: 0, length: 1 });
    expect(failure(decodeFetch(patched)).code).toBe('FG_SCHEMA');
  });
});

describe('size limits are enforced before parsing', () => {
  it('JSON messages: 64 KiB', () => {
    const padded = JSON.stringify(health);
    const exact = `${padded}${' '.repeat(LIMITS.jsonMessage - padded.length)}`;
    expect(Buffer.byteLength(exact)).toBe(LIMITS.jsonMessage);
    expect(value(decodeHealth(exact))).toEqual(health);
    const e = failure(decodeHealth(`${exact} `));
    expect(e.code).toBe('FG_TOO_LARGE');
    expect(e.message).toContain(`${LIMITS.jsonMessage + 1} bytes > ${LIMITS.jsonMessage}`);
    // bytes, not characters: 40,000 two-byte characters are 80,000 bytes
    expect(failure(decodeHealth(`"${'é'.repeat(40_000)}"`)).code).toBe('FG_TOO_LARGE');
    // garbage too large is refused as too large, without being parsed
    expect(failure(decodeState(new Uint8Array(LIMITS.jsonMessage + 1).fill(0xff))).code).toBe('FG_TOO_LARGE');
  });

  it('fetch: 1 KiB', () => {
    const big = encodeCbor({ ...fetchMsg, pad: 'x'.repeat(LIMITS.fetch) });
    expect(failure(decodeFetch(big)).code).toBe('FG_TOO_LARGE');
  });

  it('chunk: the largest chunk fits, more does not', () => {
    const full: ChunkMessage = {
      snapshot: SNAP,
      offset: 0,
      total: LIMITS.maxChunk,
      bytes: new Uint8Array(LIMITS.maxChunk),
    };
    expect(value(decodeChunk(encodeChunk(full)))).toMatchObject({ total: LIMITS.maxChunk });
    const over = encodeCbor({ ...full, bytes: new Uint8Array(LIMITS.maxChunk + 1024) });
    expect(failure(decodeChunk(over)).code).toBe('FG_TOO_LARGE');
  });

  it('desired: 64 KiB', () => {
    const big = encodeCbor({ ...desired, manifest: new Uint8Array(LIMITS.desired) });
    expect(failure(CBOR_DECODERS.desired(big)).code).toBe('FG_TOO_LARGE');
  });

  it('decodeCbor and decodeJson take the limit they are given', () => {
    expect(failure(decodeCbor(encodeCbor('x'.repeat(100)), { maxBytes: 50 })).code).toBe('FG_TOO_LARGE');
    expect(value(decodeCbor(encodeCbor('x'.repeat(10)), { maxBytes: 50 }))).toBe('x'.repeat(10));
    expect(failure(decodeJson('"abc"', 4)).code).toBe('FG_TOO_LARGE');
  });
});

describe('schema errors are FG_SCHEMA with the field path', () => {
  const cases: [string, Result<unknown>, string][] = [
    ['state.status', decodeState(JSON.stringify({ ...state, status: 'gone' })), 'status'],
    ['health.runtime_healthy', decodeHealth(JSON.stringify({ ...health, runtime_healthy: 'yes' })), 'runtime_healthy'],
    ['health.seq negative', decodeHealth(JSON.stringify({ ...health, seq: -1 })), 'seq'],
    ['health.seq fractional', decodeHealth(JSON.stringify({ ...health, seq: 1.5 })), 'seq'],
    ['health.snapshot', decodeHealth(JSON.stringify({ ...health, snapshot: 'ABC' })), 'snapshot'],
    [
      'telemetry.kpi value',
      decodeTelemetry(JSON.stringify({ ...telemetry, kpi: { cycle_time: 'fast' } })),
      'kpi.cycle_time',
    ],
    ['telemetry.window', decodeTelemetry(JSON.stringify({ ...telemetry, window: 0 })), 'window'],
    [
      'reported.slots.A.snapshot',
      decodeReported(
        JSON.stringify({ ...reported, slots: { ...reported.slots, A: { snapshot: 'x', state: 'good' } } }),
      ),
      'slots.A.snapshot',
    ],
    [
      'reported.slots.B.state',
      decodeReported(
        JSON.stringify({ ...reported, slots: { ...reported.slots, B: { snapshot: null, state: 'weird' } } }),
      ),
      'slots.B.state',
    ],
    [
      'reported.slots.A extra key (strict)',
      decodeReported(
        JSON.stringify({ ...reported, slots: { ...reported.slots, A: { snapshot: null, state: 'empty', x: 1 } } }),
      ),
      'slots.A.x',
    ],
    ['reported.phase', decodeReported(JSON.stringify({ ...reported, phase: 'rebooting' })), 'phase'],
    [
      'event.failure.category',
      decodeEvent(JSON.stringify({ ...event, failure: { ...event.failure, category: 'bogus' } })),
      'failure.category',
    ],
    ['fetch.length over maxChunk', decodeFetch(encodeCbor({ ...fetchMsg, length: LIMITS.maxChunk + 1 })), 'length'],
    ['fetch.length zero', decodeFetch(encodeCbor({ ...fetchMsg, length: 0 })), 'length'],
    ['fetch extra key (strict)', decodeFetch(encodeCbor({ ...fetchMsg, extra: 1 })), 'extra'],
    ['fetch.offset beyond 2^53', decodeFetch(encodeCbor({ ...fetchMsg, offset: 2 ** 60 })), 'offset'],
    ['chunk.bytes not bytes', decodeChunk(encodeCbor({ ...chunkData, bytes: 'AQID' })), 'bytes'],
    ['chunk.offset negative', decodeChunk(encodeCbor({ ...chunkData, offset: -1 })), 'offset'],
    ['chunk refusal.error too long', decodeChunk(encodeCbor({ ...chunkRefusal, error: 'E'.repeat(65) })), 'error'],
    ['desired.v', CBOR_DECODERS.desired(encodeCbor({ ...desired, v: 2 })), 'v'],
    ['desired.device', CBOR_DECODERS.desired(encodeCbor({ ...desired, device: '+' })), 'device'],
    ['desired.manifest', CBOR_DECODERS.desired(encodeCbor({ ...desired, manifest: 'bytes?' })), 'manifest'],
    [
      'desired.trial.window_s',
      CBOR_DECODERS.desired(encodeCbor({ ...desired, trial: { ...desired.trial, window_s: -5 } })),
      'trial.window_s',
    ],
    [
      'desired.trial.crash_loop.restarts',
      CBOR_DECODERS.desired(
        encodeCbor({ ...desired, trial: { ...desired.trial, crash_loop: { restarts: 0, within_s: 60 } } }),
      ),
      'trial.crash_loop.restarts',
    ],
  ];

  it.each(cases)('%s', (_n, r, path) => {
    const e = failure(r);
    expect(e.code).toBe('FG_SCHEMA');
    expect(e.category).toBe('rejected');
    expect(e.at).toBe(path);
    expect(e.message).toContain(`${path}: `);
  });

  it('a message that is not an object names the root', () => {
    const e = failure(decodeState('null'));
    expect(e.code).toBe('FG_SCHEMA');
    expect(e.at).toBeUndefined();
    expect(e.message).toContain('(root)');
  });

  it('decodeJsonMessage takes any schema', () => {
    expect(value(decodeJsonMessage(StateSchema, JSON.stringify(state)))).toEqual(state);
  });
});
