import { spawnSync } from 'node:child_process';

// e2e tests run the real CLI (bin/fleetgate.js -> dist/) and the lean agent entry
// (bin/fleetgate-agent.js -> dist/agent-bundle.mjs); build both as `npm run build` does, so they
// run the current sources (a tsc build alone would leave the bundle older than dist/, and the
// lean entry would fall back to the modules: not what a gateway runs). Type errors are reported
// by `npm run lint`; tsc still emits, so they do not block here.
export default function setup(): void {
  const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status !== 0)
    process.stderr.write(`global-setup: tsc reported problems (dist/ emitted anyway)\n${r.stdout.slice(0, 4000)}`);
  const b = spawnSync(process.execPath, ['scripts/bundle-agent.mjs'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (b.status !== 0) throw new Error(`global-setup: the agent bundle failed\n${b.stderr.slice(0, 4000)}`);
}
