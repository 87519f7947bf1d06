#!/usr/bin/env bash
# Re-fetch the three JavaScript libraries that bertviz's views load from a CDN, so that the views render offline.
# Source: the npm registry (`npm pack`), versions pinned to what bertviz 1.4 asks for (require.js 2.3.6, d3 5.7.0;
# jQuery 3.7.1 replaces the 2.0.0 that bertviz names: same API for bertviz, maintained).
# Usage: assets/bertviz/fetch_assets.sh   (needs npm; writes next to this script and refreshes SHA256SUMS)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent requirejs@2.3.6 d3@5.7.0 jquery@3.7.1 >/dev/null
for pkg in requirejs-2.3.6 d3-5.7.0 jquery-3.7.1; do
    mkdir "$pkg" && tar -xzf "$pkg.tgz" -C "$pkg"
done
cp requirejs-2.3.6/package/require.js "$here/require-2.3.6.js"
cp d3-5.7.0/package/dist/d3.min.js "$here/d3-5.7.0.min.js"
cp d3-5.7.0/package/LICENSE "$here/LICENSE-d3"
cp jquery-3.7.1/package/dist/jquery.min.js "$here/jquery-3.7.1.min.js"
cp jquery-3.7.1/package/LICENSE.txt "$here/LICENSE-jquery"
# requirejs's npm package ships no LICENSE file; its header says "Released under MIT license" (LICENSE-requirejs
# in this folder is that MIT text, kept by hand).
cd "$here"
sha256sum require-2.3.6.js d3-5.7.0.min.js jquery-3.7.1.min.js > SHA256SUMS
echo "fetched into $here:"; cat SHA256SUMS
