#!/usr/bin/env bash
# Installs everything kube-bpf-proxy needs on a fresh Debian 12 machine (run as root), then installs
# the npm dependencies and builds the addon, the BPF objects and the bundle. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool iproute2 nftables iptables ethtool
  curl wrk socat procps util-linux make g++ python3 pkg-config qemu-system-x86 busybox nginx-light)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm ci runs the package's own install script (node-gyp builds the addon against libbpf).
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
