import { spawnSync } from 'node:child_process';

// e2e tests run the real CLI (bin/fleetgate.js -> dist/); compile once so they run the current
// sources. Type errors are reported by `npm run lint`; tsc still emits, so they do not block here.
export default function setup(): void {
  const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status !== 0)
    process.stderr.write(`global-setup: tsc reported problems (dist/ emitted anyway)\n${r.stdout.slice(0, 4000)}`);
}
