import type { Command } from 'commander';
import { register as keys } from './keys.js';
import { register as snapshot } from './snapshot.js';

/** One entry per command group; each file adds its subcommands to the program. */
export const COMMANDS: Array<(program: Command) => void> = [keys, snapshot];
