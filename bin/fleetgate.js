#!/usr/bin/env node
// Thin launcher: the TypeScript sources are compiled to dist/ by `npm install` (the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write(
    'fleetgate: dist/ is missing; run `npm install` (or `npm run build`) in the fleetgate checkout\n',
  );
  process.exit(70);
}
await import(entry.href);
