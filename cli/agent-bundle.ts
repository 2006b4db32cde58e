/**
 * Which code the lean agent entry runs (bin/fleetgate-agent.js; bench/agent-rss.ts reports it):
 * the one-module bundle `npm run build` makes (scripts/bundle-agent.mjs) when it is at least as new
 * as the tsc output, else the tsc modules — the same code, after a plain `tsc` build.
 */
import { existsSync, statSync } from 'node:fs';

/** `dist`: URL of the dist/ folder (ending in '/'). Assumes dist/cli/agent-entry.js exists. */
export function leanAgentModule(dist: URL): { kind: 'bundle' | 'modules'; url: URL } {
  const modules = new URL('cli/agent-entry.js', dist);
  const bundle = new URL('agent-bundle.mjs', dist);
  const fresh = existsSync(bundle) && statSync(bundle).mtimeMs >= statSync(modules).mtimeMs;
  return fresh ? { kind: 'bundle', url: bundle } : { kind: 'modules', url: modules };
}
