import { execFileSync } from 'node:child_process';

// e2e tests run the real CLI (bin/fleetgate.js -> dist/); compile once so they run the current sources.
export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    stdio: 'inherit',
  });
}
