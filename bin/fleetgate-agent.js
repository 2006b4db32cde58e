#!/usr/bin/env -S node --lite-mode --no-expose-wasm
// The gateway's lean agent entry (cli/agent-entry.ts): `fleetgate agent` without the rest of the
// CLI, in V8's lite mode (less memory, no JIT). The systemd unit passes the same node options.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/agent-entry.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(
    'fleetgate-agent: dist/ is missing; run `npm install` (or `npm run build`) in the fleetgate checkout\n',
  );
  process.exit(70);
}
await import(entry.href);
