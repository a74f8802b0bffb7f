/** Standalone simulator entry: `tsx sim/main.ts --scenario chaos --nodes 100 --seed 1`, or `tsx sim/main.ts campaign …`. */
import { runSimCommand } from './cli.ts'

const argv = process.argv.slice(2)
const words = argv[0] === 'sim' ? argv.slice(1) : argv
if (words[0] === 'campaign') {
  const { runCampaignCommand } = await import('./campaign.ts')
  process.exit(await runCampaignCommand(words))
}
process.exit(await runSimCommand(argv))
