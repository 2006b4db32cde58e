#!/usr/bin/env -S node --lite-mode --no-expose-wasm
// The gateway's lean agent entry (cli/agent-entry.ts): `fleetgate agent` without the rest of the
// CLI, in V8's lite mode (less memory, no JIT). The systemd unit passes the same node options.
// It runs the one-module bundle `npm run build` makes (scripts/bundle-agent.mjs: less memory than
// ~250 modules); when the bundle is missing or older than a later plain `tsc` build, it runs
// that build's modules, the same code (cli/agent-bundle.ts).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/', import.meta.url);
if (!existsSync(fileURLToPath(new URL('cli/agent-entry.js', dist)))) {
  process.stderr.write(
    'fleetgate-agent: dist/ is missing; run `npm install` (or `npm run build`) in the fleetgate checkout\n',
  );
  process.exit(70);
}
const { leanAgentModule } = await import(new URL('cli/agent-bundle.js', dist).href);
await import(leanAgentModule(dist).url.href);
