import type { Command } from 'commander';

/** One entry per command group; each file adds its subcommands to the program. */
export const COMMANDS: Array<(program: Command) => void> = [];
