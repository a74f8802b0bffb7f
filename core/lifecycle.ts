/** A module with a start/stop lifecycle (js-libp2p's Startable, narrowed). */
export interface Startable {
  start(): Promise<void>
  stop(): Promise<void>
}
