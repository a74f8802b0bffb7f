/** Standalone simulator entry: `tsx sim/main.ts --scenario membership --nodes 100 --seed 1`. */
import { runSimCommand } from './cli.ts'

process.exit(await runSimCommand(process.argv.slice(2)))
