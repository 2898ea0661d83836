#!/usr/bin/env bash
# Browser test prerequisites, installed only when missing: Debian's chromium (+ an emoji font,
# without which emoji render as boxes) and npm's playwright-core (which never downloads a browser).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; then
  as_root=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $as_root apt-get update -qq
  $as_root apt-get install -y -qq chromium fonts-noto-color-emoji
fi
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent
