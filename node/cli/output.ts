/** Terminal output of the CLI: aligned tables and the deploy progress line. */
import type { DeploymentView } from '../deployment-view.ts'
import { CliError, type ApiClient } from './client.ts'

export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
const POLL_INTERVAL_MS = 250

function summary(view: DeploymentView): string {
  const running = view.replicas.filter((r) => r.state === 'running').length
  const states = [...new Set(view.replicas.map((r) => r.state))].join(', ') || 'no replicas'
  const error = view.replicas.find((r) => r.error !== null)?.error
  return `${view.name}: ${view.phase} (${running}/${view.replicas.length} running: ${states})${error !== undefined && error !== null ? ` — ${error}` : ''}`
}

/**
 * Polls the deployment until every replica runs, showing a spinner on a TTY
 * and one line per change otherwise. Fails on timeout or when every replica
 * has failed for good.
 */
export async function waitForDeployment(client: ApiClient, id: string, timeoutMs: number): Promise<DeploymentView> {
  const tty = process.stderr.isTTY === true
  const startedAt = Date.now()
  let frame = 0
  let lastLine = ''
  for (;;) {
    const view = await client.request<DeploymentView>('GET', `/v1/deployments/${id}`)
    const line = summary(view)
    const elapsedS = ((Date.now() - startedAt) / 1000).toFixed(1)
    if (tty) process.stderr.write(`\r\x1b[2K${SPINNER[frame++ % SPINNER.length]} ${line} ${elapsedS}s`)
    else if (line !== lastLine) process.stderr.write(`${line}\n`)
    lastLine = line
    if (view.phase === 'running') {
      if (tty) process.stderr.write(`\r\x1b[2K✔ ${line} in ${elapsedS}s\n`)
      return view
    }
    const permanentlyFailed = view.replicas.length > 0 && view.replicas.every((r) => r.state === 'failed' || r.state === 'stopped') && view.spec.restart === 'never'
    if (permanentlyFailed || view.phase === 'unschedulable') {
      if (tty) process.stderr.write('\n')
      throw new CliError(`deployment ${id} did not start: ${line}`)
    }
    if (Date.now() - startedAt > timeoutMs) {
      if (tty) process.stderr.write('\n')
      throw new CliError(`deployment ${id} accepted, but not running after ${Math.round(timeoutMs / 1000)} s: ${line} (it keeps trying; see \`lattice ps\`)`)
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS))
  }
}
