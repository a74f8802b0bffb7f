/**
 * core/ — the shared types every other folder may import: the four ports
 * (Clock, Store, Runtime, Transport), the seeded PRNG, the deployment spec
 * schema, coded errors, the Logger shape and the Startable lifecycle.
 * Nothing here touches the world; adapters live with their owners.
 */
export * from './clock.ts'
export * from './rng.ts'
export * from './store.ts'
export * from './runtime.ts'
export * from './transport.ts'
export * from './spec.ts'
export * from './errors.ts'
export * from './logger.ts'
export * from './lifecycle.ts'
export * from './json.ts'
