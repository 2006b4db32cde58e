import type { Command } from 'commander';
import { register as agent } from './agent.js';
import { register as assign } from './assign.js';
import { register as broker } from './broker.js';
import { register as demo } from './demo.js';
import { register as device } from './device.js';
import { register as drift } from './drift.js';
import { register as keys } from './keys.js';
import { register as manager } from './manager.js';
import { register as rollout } from './rollout.js';
import { register as rolloutPlan } from './rollout-plan.js';
import { register as scenario } from './scenario.js';
import { register as simulate } from './simulate.js';
import { register as site } from './site.js';
import { register as snapshot } from './snapshot.js';
import { register as snapshotHistory } from './snapshot-history.js';
import { register as snapshotRepo } from './snapshot-repo.js';
import { register as token } from './token.js';

/** One entry per command group; each file adds its subcommands to the program. */
export const COMMANDS: Array<(program: Command) => void> = [
  keys,
  snapshot,
  manager,
  device,
  assign,
  drift,
  snapshotRepo,
  snapshotHistory,
  rollout,
  rolloutPlan,
  site,
  agent,
  broker,
  simulate,
  demo,
  scenario,
  token,
];
