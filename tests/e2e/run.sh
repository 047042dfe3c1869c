#!/bin/sh
# Runs the browser suite, or exits 77 (skipped) when what it needs is not installed.
dir=$(cd "$(dirname "$0")" && pwd)
chromium=${EARND_CHROMIUM:-/usr/bin/chromium}
for need in node "$chromium"; do
  if ! command -v "$need" >/dev/null 2>&1; then
    echo "skipped: $need is not installed (tools/test installs it)"
    exit 77
  fi
done
if [ ! -d "$dir/node_modules/playwright-core" ] || [ ! -d "$dir/node_modules/axe-core" ]; then
  echo "skipped: run npm ci --prefix tests/e2e (tools/test does)"
  exit 77
fi
exec node --test --test-reporter=spec "$dir/pages.test.mjs"
