#!/usr/bin/env bash
# npm run lab: the main job (lab/main.ts). Needs root, bpffs and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --import=tsx lab/main.ts "$@"
