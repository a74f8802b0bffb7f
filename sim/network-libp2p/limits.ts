/** What the real-network runner accepts: a module of its own, so that checking the simulator's flags does not load libp2p. */

/** Largest node count this runner accepts: beyond ~200 one process cannot hold the real stacks (STACK-NOTES). */
export const LIBP2P_SCENARIO_NODES_MAX = 200
