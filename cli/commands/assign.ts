/** `fleetgate assign ID... --snapshot SNAP`: the same as `fleetgate device assign`. */
import type { Command } from 'commander';
import { assignCommand } from './device.js';

export function register(program: Command): void {
  assignCommand(program, 'assign');
}
