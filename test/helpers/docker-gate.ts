/**
 * One rule for every test that needs the Docker engine: run when it answers;
 * in CI (CI=true) an unreachable engine FAILS the run; elsewhere the tests are
 * skipped with a message saying how to enable them.
 */
import Docker from 'dockerode'
import { describe, it } from 'vitest'
import { START_DOCKER_HINT } from '../../runtime/index.ts'

async function probe(): Promise<string | undefined> {
  try {
    await new Docker().ping()
    return undefined
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

export const dockerUnreachableReason = await probe()

/** `describe` for Docker tests, gated by the rule above. */
export function describeWithDocker(name: string, body: () => void): void {
  if (dockerUnreachableReason === undefined) {
    describe(name, body)
  } else if (process.env.CI === 'true') {
    describe(name, () => {
      it('needs a reachable Docker engine in CI', () => {
        throw new Error(`Docker engine unreachable: ${dockerUnreachableReason}. Fix: ${START_DOCKER_HINT}`)
      })
    })
  } else {
    console.warn(`[${name}] skipped: Docker engine unreachable (${dockerUnreachableReason}). To run: ${START_DOCKER_HINT}`)
    describe.skip(name, body)
  }
}
