/**
 * Fuzz targets: every decoder in protocol/ (and the rollout plan parser), each fed random bytes,
 * random well-formed values, byte mutants of valid inputs and structural mutants (re-signed with
 * the right key where the input is signed, so the checks behind the signature run too).
 */
import fc from 'fast-check';
import { parsePlan } from '../../manager/rollout/plan.js';
import { decodeBundle, decodePayload, verifyBundle } from '../../protocol/bundle.js';
import { decodeCbor, encodeCbor } from '../../protocol/cbor.js';
import { openCose } from '../../protocol/cose.js';
import { openDesired } from '../../protocol/desired.js';
import { evaluateGate, parseGate } from '../../protocol/gates/index.js';
import { parsePublicKeyPem, parseSigningKeyPem, trustStore } from '../../protocol/keys.js';
import { openManifest } from '../../protocol/manifest.js';
import {
  decodeChunk,
  decodeEvent,
  decodeEvents,
  decodeFetch,
  decodeHealth,
  decodeReported,
  decodeState,
  decodeTelemetry,
} from '../../protocol/messages.js';
import { DEFAULT_PREFIX, parseTopic } from '../../protocol/topics.js';
import { type Corpus, DEVICE, signValue } from './corpus.js';
import { byteMutants, randomBytes, structMutants } from './mutate.js';

export interface FuzzTarget<T = unknown> {
  readonly name: string;
  /** Share of the case budget. */
  readonly weight: number;
  readonly arb: fc.Arbitrary<T>;
  /** Returns the decoder's result (checked to be a Result with a registered code) or void. */
  run(input: T): unknown;
  /** Async targets are awaited with a time bound. */
  readonly async?: boolean;
  /** The returned value need not be a Result (handlers return nothing). */
  readonly noResult?: boolean;
  /** Extra invariant on the output; a string is a failure. */
  check?(input: T, out: unknown): string | null;
  describe(input: T): string;
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex').slice(0, 240);
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: false });

/** The four input families, weighted towards mutants of valid inputs. */
export function inputs(corpus: readonly Uint8Array[], struct?: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const wellFormed = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => enc.encode(JSON.stringify(v) ?? 'null')),
    fc.anything({ maxDepth: 3, withMap: true, withTypedArray: true }).map((v) => {
      try {
        return encodeCbor(v);
      } catch {
        return new Uint8Array([0xf6]);
      }
    }),
  );
  const families: { weight: number; arbitrary: fc.Arbitrary<Uint8Array> }[] = [
    { weight: 1, arbitrary: randomBytes },
    { weight: 1, arbitrary: wellFormed },
    { weight: 3, arbitrary: byteMutants(corpus) },
  ];
  if (struct) families.push({ weight: 3, arbitrary: struct });
  return fc.oneof(...families);
}

function bytesTarget(
  name: string,
  weight: number,
  arb: fc.Arbitrary<Uint8Array>,
  run: (b: Uint8Array) => unknown,
): FuzzTarget<Uint8Array> {
  return { name, weight, arb, run, describe: (b) => `${b.length} bytes ${hex(b)}` };
}

function textMutants(seeds: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: byteMutants(seeds.map((s) => enc.encode(s))).map((b) => dec.decode(b)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 60, unit: 'binary' }) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('(', '!', '-', '((a', '[', '{'))
        .map(([n, c]) => c.repeat(n)),
    },
  );
}

export function protocolTargets(c: Corpus): FuzzTarget[] {
  const jsonStruct = structMutants(c.jsonValues).map((v) => enc.encode(JSON.stringify(v) ?? 'null'));
  const allJson = [...c.json.state, ...c.json.reported, ...c.json.health, ...c.json.telemetry, ...c.json.events];
  const jsonArb = inputs(allJson, jsonStruct);
  const cborStruct = (values: unknown[]) =>
    structMutants(values).map((v) => {
      try {
        return encodeCbor(v);
      } catch {
        return new Uint8Array([0xa0]);
      }
    });
  const fetchArb = inputs(
    c.fetch,
    cborStruct(c.fetch.map((b) => (decodeCbor(b, { maxBytes: 1 << 20 }) as { value: unknown }).value)),
  );
  const chunkArb = inputs(
    c.chunk,
    cborStruct(c.chunk.map((b) => (decodeCbor(b, { maxBytes: 1 << 20 }) as { value: unknown }).value)),
  );
  const coseCorpus = [...c.manifests.map((m) => m.cose), ...c.desired];
  // COSE structure mutants: the [protected, unprotected, payload, signature] array re-encoded under tag 18.
  const coseArrays = coseCorpus.map(
    (b) => (decodeCbor(b.subarray(1), { maxBytes: 1 << 20, maps: true }) as { value: unknown }).value,
  );
  const coseStruct = structMutants(coseArrays).map((v) => {
    try {
      const body = encodeCbor(v);
      const out = new Uint8Array(body.length + 1);
      out[0] = 0xd2;
      out.set(body, 1);
      return out;
    } catch {
      return new Uint8Array([0xd2, 0x80]);
    }
  });
  const both = trustStore([...c.releaseTrust.values(), ...c.managerTrust.values()]);
  const manifestStruct = fc
    .tuple(structMutants(c.manifestValues), fc.boolean())
    .map(([v, trusted]) => signValue(v, trusted ? c.release : c.stranger));
  const desiredStruct = fc
    .tuple(structMutants(c.desiredDocs), fc.integer({ min: 0, max: 9 }))
    .map(([v, k]) => signValue(v, k < 8 ? c.manager : k === 8 ? c.release : c.stranger));
  const bundleStruct = structMutants(
    c.bundleParts.map(
      (p) =>
        new Map<string, unknown>([
          ['fgb', 1],
          ['manifest', p.manifest],
          ['payload', p.payload],
        ]),
    ),
  ).map((v) => {
    try {
      return encodeCbor(v);
    } catch {
      return new Uint8Array([0xa0]);
    }
  });
  const payloadStruct = cborStruct(c.payloadValues);
  const plan = `snapshot: line1@1.4.2
gates:
  health: runtime_healthy && adapter_connected
  telemetry: gap < 10s && drops == 0
  behavior: acceptance_suite_passed
stages:
  - canary: 1 site
  - batch: 10 sites
  - fleet: all
`;
  const signals = (name: string) =>
    name.length % 3 === 0 ? name.length : name.length % 3 === 1 ? name.startsWith('r') : undefined;
  return [
    bytesTarget('decodeState', 1, jsonArb, decodeState),
    bytesTarget('decodeReported', 1, jsonArb, decodeReported),
    bytesTarget('decodeHealth', 1, jsonArb, decodeHealth),
    bytesTarget('decodeTelemetry', 1, jsonArb, decodeTelemetry),
    bytesTarget('decodeEvent', 1, jsonArb, decodeEvent),
    bytesTarget('decodeEvents', 1, jsonArb, decodeEvents),
    bytesTarget('decodeFetch', 1, fetchArb, decodeFetch),
    bytesTarget('decodeChunk', 1, chunkArb, decodeChunk),
    bytesTarget('decodeCbor', 1, inputs([...c.fetch, ...c.chunk, ...coseCorpus]), (b) =>
      decodeCbor(b, { maxBytes: 1 << 20, maps: b.length % 2 === 0 }),
    ),
    bytesTarget('openCose', 1, inputs(coseCorpus, coseStruct), (b) => openCose(b, both, { maxBytes: 64 * 1024 })),
    bytesTarget(
      'openManifest',
      1,
      inputs(
        c.manifests.map((m) => m.cose),
        manifestStruct,
      ),
      (b) => openManifest(b, c.releaseTrust),
    ),
    bytesTarget('decodeBundle', 1, inputs(c.bundles, bundleStruct), (b) => decodeBundle(b)),
    bytesTarget('verifyBundle', 1, inputs(c.bundles, bundleStruct), (b) => verifyBundle(b, c.releaseTrust)),
    bytesTarget('decodePayload', 1, inputs(c.payloads, payloadStruct), (b) => decodePayload(b)),
    bytesTarget('openDesired', 1.5, inputs(c.desired, desiredStruct), (b) =>
      openDesired(b, { manager: c.managerTrust, release: c.releaseTrust }, { deviceId: DEVICE, now: c.now }),
    ),
    {
      name: 'parseGate + evaluateGate',
      weight: 1,
      arb: textMutants(c.gates),
      run: (s: string) => {
        const g = parseGate(s);
        if (g.ok) evaluateGate(g.value, signals);
        return g;
      },
      describe: (s: string) => JSON.stringify(s.slice(0, 200)),
    } as FuzzTarget<string> as FuzzTarget,
    {
      name: 'parseTopic',
      weight: 1,
      arb: fc.tuple(textMutants(c.topics), fc.oneof(fc.constant(DEFAULT_PREFIX), fc.string({ maxLength: 20 }))),
      run: ([t, p]: [string, string]) => parseTopic(p, t),
      describe: ([t, p]: [string, string]) => JSON.stringify([p, t.slice(0, 200)]),
    } as FuzzTarget<[string, string]> as FuzzTarget,
    {
      name: 'parsePublicKeyPem / parseSigningKeyPem',
      weight: 0.5,
      arb: textMutants(c.pems),
      run: (s: string) => (s.includes('PRIVATE') ? parseSigningKeyPem(s) : parsePublicKeyPem(s)),
      describe: (s: string) => JSON.stringify(s.slice(0, 200)),
    } as FuzzTarget<string> as FuzzTarget,
    {
      name: 'parsePlan (rollout plan YAML)',
      weight: 0.5,
      arb: textMutants([plan]),
      run: (s: string) => parsePlan(s),
      describe: (s: string) => JSON.stringify(s.slice(0, 200)),
    } as FuzzTarget<string> as FuzzTarget,
  ] as FuzzTarget[];
}
