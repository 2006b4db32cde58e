/**
 * Attacks on content: desired documents injected as a compromised broker connection could
 * (wrong key, spoofed kid, a manifest from an untrusted key under the real manager key, replay
 * of an older generation, a tampered manifest naming an older release, expiry), bundles pushed
 * to the manager's HTTP API (tampered, wrongly signed, truncated, oversized), and a payload
 * corrupted at rest in the manager's repository. The victim must not act, stay on its slot, and
 * the refusal must reach the outcome ledger with its code and category.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { decodeBundle, encodeBundle } from '../protocol/bundle.js';
import { signDesired } from '../protocol/desired.js';
import { ERRORS, type ErrorCode } from '../protocol/errors.js';
import type { DesiredDocument } from '../protocol/messages.js';
import { TRIAL, waitFor } from './fleet.js';
import { inject, sleep, topic } from './security-kit.js';
import type { Attack, SecurityContext } from './security-mqtt.js';

function activeOf(ctx: SecurityContext): string | null {
  const s = ctx.victim.store;
  return s.slot(s.boot().active).snapshot;
}

/** A desired document for the victim, as the manager would sign it, with `over` applied. */
function docFor(ctx: SecurityContext, over: Partial<DesiredDocument> = {}): DesiredDocument {
  const now = Date.now();
  return {
    v: 1,
    device: ctx.victim.id,
    generation: now * 10,
    issued: now,
    expires: now + 3_600_000,
    rollout: null,
    stage: null,
    manifest: ctx.goodTarget.manifest,
    trial: { window_s: 2, crash_loop: { restarts: 3, within_s: 60 }, max_agent_starts: 3 },
    ...over,
  };
}

/**
 * Injects `bytes` as the victim's retained desired document and checks it was refused with
 * `code`: logged by the agent, in the manager's ledger with the code's category, the victim still
 * on the same slot and phase. Then puts the manager's real document back.
 */
async function refusedDesired(
  ctx: SecurityContext,
  bytes: Uint8Array,
  code: ErrorCode,
  minLevel = 40,
): Promise<string[]> {
  const p: string[] = [];
  const before = {
    active: activeOf(ctx),
    phase: ctx.victim.agent.runner.current.phase,
    gen: ctx.victim.agent.runner.current.generation,
  };
  const ledger = () =>
    ctx.fleet.stack.service
      .events({ device: ctx.victim.id, kind: 'update', limit: 10_000 })
      .some((e) => (e.data.failure as { code?: string } | null)?.code === code);
  const hadIt = ledger();
  await inject(ctx.fleet, topic(ctx.victim.id, 'desired'), bytes);
  try {
    await waitFor(`${code} logged`, () => ctx.watch.has(code, minLevel), 5_000);
  } catch {
    p.push(`${code} not logged by the agent`);
  }
  // A replay is only logged (the agent holds the generation; nothing new to report).
  if (code !== 'FG_DESIRED_REPLAYED' && !hadIt) {
    try {
      await waitFor(`${code} in the ledger`, ledger, 5_000);
    } catch {
      p.push(`${code} not in the manager's ledger`);
    }
  }
  await sleep(300);
  const now = {
    active: activeOf(ctx),
    phase: ctx.victim.agent.runner.current.phase,
    gen: ctx.victim.agent.runner.current.generation,
  };
  if (JSON.stringify(now) !== JSON.stringify(before))
    p.push(`victim moved: ${JSON.stringify(before)} -> ${JSON.stringify(now)}`);
  const rec = ctx.fleet.stack.service.getDesired(ctx.victim.id);
  if (rec) await inject(ctx.fleet, topic(ctx.victim.id, 'desired'), rec.bytes);
  return p;
}

export const DESIRED_ATTACKS: readonly Attack[] = [
  {
    name: 'forged desired document: signed by an untrusted key',
    code: 'FG_SIG_UNKNOWN_KEY',
    category: 'signature',
    run: (ctx) => refusedDesired(ctx, signDesired(docFor(ctx), ctx.fleet.strangerKey), 'FG_SIG_UNKNOWN_KEY'),
  },
  {
    name: "forged desired document: the manager's kid, another key's signature",
    code: 'FG_SIG_INVALID',
    category: 'signature',
    run: (ctx) =>
      refusedDesired(
        ctx,
        signDesired(docFor(ctx), { ...ctx.fleet.strangerKey, kid: ctx.fleet.managerKey.kid }),
        'FG_SIG_INVALID',
      ),
  },
  {
    name: 'manager key compromised: a manifest signed by an untrusted release key',
    code: 'FG_SIG_UNKNOWN_KEY',
    category: 'signature',
    run: (ctx) => {
      const rogue = ctx.fleet.bundle('healthy', {}, 0, ctx.fleet.strangerKey);
      return refusedDesired(
        ctx,
        signDesired(docFor(ctx, { manifest: rogue.manifest }), ctx.fleet.managerKey),
        'FG_SIG_UNKNOWN_KEY',
      );
    },
  },
  {
    name: 'downgrade: a tampered manifest (version and seq of an older release) under the manager key',
    code: 'FG_SIG_INVALID',
    category: 'signature',
    run: (ctx) => {
      const cose = Uint8Array.from(ctx.goodTarget.manifest);
      // The version string "1.0.N" sits in the signed payload: make it read as an older release.
      const at = Buffer.from(cose).indexOf(Buffer.from(ctx.goodTarget.version));
      if (at < 0) return Promise.resolve(['version not found in the manifest']);
      cose[at + ctx.goodTarget.version.length - 1] = 0x30;
      return refusedDesired(ctx, signDesired(docFor(ctx, { manifest: cose }), ctx.fleet.managerKey), 'FG_SIG_INVALID');
    },
  },
  {
    name: 'downgrade: replay of an older generation (naming the snapshot it ran before)',
    code: 'FG_DESIRED_REPLAYED',
    category: 'rejected',
    run: async (ctx) => {
      const old = ctx.fleet.stack.service.getDesired(ctx.victim.id);
      if (!old) return ['no desired document to replay'];
      // A newer generation for the same snapshot (re-sign), handled; then the old one again.
      await ctx.fleet.stack.service.assign([ctx.victim.id], old.snapshot, { trial: TRIAL });
      const next = ctx.fleet.stack.service.getDesired(ctx.victim.id)?.generation ?? 0;
      await waitFor('newer generation handled', () => ctx.victim.agent.runner.current.generation === next, 10_000);
      // The old document exactly as the manager signed it then.
      return refusedDesired(ctx, old.bytes, 'FG_DESIRED_REPLAYED');
    },
  },
  {
    name: 'expired desired document (manager key, newer generation)',
    code: 'FG_DESIRED_EXPIRED',
    category: 'rejected',
    run: (ctx) => {
      const now = Date.now();
      const doc = docFor(ctx, { issued: now - 7_200_000, expires: now - 3_600_000 });
      return refusedDesired(ctx, signDesired(doc, ctx.fleet.managerKey), 'FG_DESIRED_EXPIRED');
    },
  },
];

/** Pushes through the HTTP API; resolves with status and code. */
async function push(
  app: FastifyInstance,
  bytes: Uint8Array,
): Promise<{ status: number; code: string | undefined; category: string | undefined }> {
  const r = await app.inject({
    method: 'POST',
    url: '/api/v1/snapshots',
    payload: Buffer.from(bytes),
    headers: { 'content-type': 'application/octet-stream' },
  });
  const body = r.json() as { code?: string; category?: string; error?: { code?: string; category?: string } };
  return { status: r.statusCode, code: body.code ?? body.error?.code, category: body.category ?? body.error?.category };
}

export function bundleAttacks(app: () => FastifyInstance, bodyLimit: number): Attack[] {
  const tamper = (name: string, code: ErrorCode, make: (ctx: SecurityContext) => Uint8Array): Attack => ({
    name: `tampered bundle: ${name}`,
    code,
    category: ERRORS[code].category,
    minLevel: 30,
    async run(ctx) {
      const before = ctx.fleet.stack.service.listSnapshots().length;
      const r = await push(app(), make(ctx));
      const p: string[] = [];
      if (r.status < 400 || r.status >= 500) p.push(`HTTP ${r.status}`);
      if (r.code !== code) p.push(`refused with ${r.code}, expected ${code}`);
      if (ctx.fleet.stack.service.listSnapshots().length !== before) p.push('a snapshot was stored');
      if (!ctx.watch.has(code, 30)) p.push(`${code} not logged`);
      return p;
    },
  });
  const fresh = (ctx: SecurityContext) => ctx.fleet.bundle('healthy', {}, 64 * 1024);
  return [
    tamper('one payload byte flipped', 'FG_PAYLOAD_DIGEST_MISMATCH', (ctx) => {
      const b = Buffer.from(fresh(ctx).bytes);
      b[b.length - 100] = (b[b.length - 100] as number) ^ 0x01;
      return b;
    }),
    tamper('one signed manifest byte flipped', 'FG_SIG_INVALID', (ctx) => {
      const f = fresh(ctx);
      const b = Buffer.from(f.bytes);
      const at = b.indexOf(Buffer.from(f.version));
      b[at] = (b[at] as number) ^ 0x02;
      return b;
    }),
    tamper(
      'signed by an untrusted key',
      'FG_SIG_UNKNOWN_KEY',
      (ctx) => ctx.fleet.bundle('healthy', {}, 0, ctx.fleet.strangerKey).bytes,
    ),
    tamper('a trusted manifest with another payload', 'FG_PAYLOAD_SIZE_MISMATCH', (ctx) => {
      const a = decodeBundle(fresh(ctx).bytes);
      const b = decodeBundle(ctx.fleet.bundle('healthy').bytes);
      if (!a.ok || !b.ok) throw new Error('cannot split a fresh bundle');
      return encodeBundle(a.value.manifestCose, b.value.payload);
    }),
    tamper('truncated', 'FG_BUNDLE_MALFORMED', (ctx) => fresh(ctx).bytes.subarray(0, 200)),
    tamper(
      `larger than the body limit (${bodyLimit >> 20} MiB)`,
      'FG_BUNDLE_TOO_LARGE',
      () => new Uint8Array(bodyLimit + 1024),
    ),
  ];
}

export const AT_REST: Attack = {
  name: "payload corrupted at rest in the manager's repository",
  code: 'FG_PAYLOAD_DIGEST_MISMATCH',
  category: 'integrity',
  async run(ctx) {
    const p: string[] = [];
    const b = await ctx.fleet.push(ctx.fleet.bundle('healthy', {}, 128 * 1024));
    const file = join(ctx.fleet.dir, 'manager', 'snapshots', `${b.id}.payload`);
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0xff;
    writeFileSync(file, bytes);
    const before = activeOf(ctx);
    await ctx.fleet.assign([ctx.victim.id], b);
    try {
      await waitFor(
        'digest refusal',
        () => ctx.victim.agent.runner.current.lastFailure?.code === 'FG_PAYLOAD_DIGEST_MISMATCH',
        20_000,
      );
    } catch {
      p.push(
        `victim ended in ${ctx.victim.agent.runner.current.phase} with ${ctx.victim.agent.runner.current.lastFailure?.code}`,
      );
    }
    await sleep(500);
    if (activeOf(ctx) !== before) p.push('victim switched to the corrupted snapshot');
    const r = ctx.fleet.device(ctx.victim.id).reported;
    if (r?.last_failure?.code !== 'FG_PAYLOAD_DIGEST_MISMATCH' || r.last_failure.category !== 'integrity')
      p.push(`manager sees ${r?.last_failure?.code}/${r?.last_failure?.category}`);
    return p;
  },
};
