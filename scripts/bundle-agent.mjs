// Bundles the gateway's lean agent entry (dist/cli/agent-entry.js, compiled by tsc first) into one
// minified ES module, dist/agent-bundle.mjs, which bin/fleetgate-agent.js runs. One module instead
// of ~250 (mqtt.js alone is 97) with short identifiers and only the code reachable from the agent:
// 3.7 MiB less idle RSS on a gateway (docs/benchmarks.md "agent-rss"). Run by `npm run build` and
// `prepare`; `node scripts/bundle-agent.mjs` after a plain `tsc` build.
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'cli', 'agent-entry.js');
const outfile = join(root, 'dist', 'agent-bundle.mjs');

try {
  statSync(entry);
} catch {
  process.stderr.write(`bundle-agent: ${entry} is missing; compile first (tsc -p tsconfig.build.json)\n`);
  process.exit(1);
}

await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  minify: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Native addons and the logger stay in node_modules: better-sqlite3 and cbor-extract load their
  // compiled .node files relative to their own package, and pino resolves its transport workers
  // (unused by the agent, but reachable) from its own directory.
  external: ['better-sqlite3', 'cbor-extract', 'pino'],
  // CommonJS dependencies call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire as __fgRequire } from 'node:module'; const require = __fgRequire(import.meta.url);",
  },
  legalComments: 'none',
  logLevel: 'warning',
});
