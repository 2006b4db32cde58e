import { signDesired } from '../protocol/desired.js';
import { sha256 } from '../protocol/digest.js';
import { type Ed25519, naclEd25519, nodeEd25519 } from '../protocol/ed25519.js';
import { generateSigningKey } from '../protocol/keys.js';
import type { DesiredDocument } from '../protocol/messages.js';
import { type Bench, type Figure, stats, timeSync } from './lib.js';

/** Issue "Fleet-scale hot paths" section 2: Ed25519 cost per implementation, desired-document signing, payload hashing. */
export const cryptoBench: Bench = {
  name: 'crypto',
  description: 'Ed25519 node:crypto vs tweetnacl, desired-document signing, SHA-256 of a 4 MiB payload',
  async run({ quick }) {
    const key = generateSigningKey();
    const msg = new Uint8Array(64).fill(7);
    const figures: Figure[] = [];
    const per = (ed: Ed25519, n: number) => {
      const sig = ed.sign(msg, key.seed);
      const sign = stats(timeSync(() => ed.sign(msg, key.seed), n));
      const verify = stats(timeSync(() => ed.verify(msg, sig, key.publicKey), n));
      return { sign, verify };
    };
    const node = per(nodeEd25519, quick ? 200 : 2000);
    const nacl = per(naclEd25519, quick ? 5 : 40);
    figures.push(
      { name: 'ed25519 verify, node:crypto (median)', value: node.verify.median, unit: 'ms' },
      { name: 'ed25519 verify, tweetnacl (median)', value: nacl.verify.median, unit: 'ms' },
      {
        name: 'ed25519 verify ratio tweetnacl / node:crypto',
        value: nacl.verify.median / node.verify.median,
        unit: 'x',
      },
      { name: 'ed25519 sign, node:crypto (median)', value: node.sign.median, unit: 'ms' },
      { name: 'ed25519 sign, tweetnacl (median)', value: nacl.sign.median, unit: 'ms' },
    );
    const manifest = new Uint8Array(600).fill(1);
    const doc: DesiredDocument = {
      v: 1,
      device: 'gw-1',
      generation: Date.now(),
      issued: Date.now(),
      expires: Date.now() + 86_400_000,
      rollout: 'r1',
      stage: 'canary',
      manifest,
      trial: { window_s: 60, crash_loop: { restarts: 3, within_s: 60 }, max_agent_starts: 3 },
    };
    const sd = stats(timeSync(() => signDesired(doc, key), quick ? 200 : 2000));
    figures.push({
      name: 'sign a desired document (median)',
      value: sd.median,
      unit: 'ms',
      goal: { op: '<=', value: 1 },
    });
    const big = new Uint8Array(4 * 1024 * 1024).fill(3);
    const h = stats(timeSync(() => sha256(big), quick ? 5 : 30, 2));
    figures.push({ name: 'sha-256 of a 4 MiB payload (median)', value: h.median, unit: 'ms' });
    return figures;
  },
};
