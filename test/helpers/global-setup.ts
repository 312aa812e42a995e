import { buildCliBundle, bundleIsFresh, defaultBundleLocation } from '../../bin/cli-bundle.js';

/**
 * Before any test: the CLI's bundle is made fresh (npm ci's `prepare` builds it; an edit since makes it stale), so
 * every spawned `rackswarm` runs what an installed node runs — the bundle — built from the code under test.
 */
export default async function setup(): Promise<void> {
  const at = defaultBundleLocation();
  if (!bundleIsFresh(at)) await buildCliBundle(at);
}
