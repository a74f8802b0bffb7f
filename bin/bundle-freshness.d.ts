/** True when `root`'s dist/lattice.js exists and is no older than package.json and every source it was built from (bundle-freshness.js). */
export declare function bundleIsFresh(root: string): boolean
