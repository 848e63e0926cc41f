#!/usr/bin/env bash
# Builds the agent's image on this machine with no container registry: mmdebstrap makes a Debian 12
# root filesystem from Debian's mirror (the runtime packages below, nothing else), `podman import`
# turns it into the base, and deploy/Containerfile.local adds the Node 24 binary and the built agent
# (bundle, addon, BPF object). Users with a registry build deploy/Dockerfile instead (same contents,
# on node:24-bookworm-slim).
#
#   npm run build && bash scripts/build-image.sh      # prints the image reference on its last line
#
# Cached by content: the base by its package list, the image by a hash of everything it holds, so a
# second run with the same inputs builds nothing. Older builds of the same version are untagged.
# Environment: NODE_BIN (default: the `node` on PATH; must be Node 24), KBP_IMAGE (repository,
# default localhost/kube-bpf-proxy), KBP_BASE_REBUILD=1 (make the base again).
# This machine needs runc (crun refuses a hybrid cgroup layout) and rlimits no higher than the
# current ones (no CAP_SYS_RESOURCE): the flags below; the lab test passes the same to `podman run`.
set -euo pipefail
cd "$(dirname "$0")/.."

REPO=${KBP_IMAGE:-localhost/kube-bpf-proxy}
VERSION=$(node -p 'require("./package.json").version')
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
SUITE=bookworm

# What the agent runs at run time, and why:
#   libbpf1 libelf1 zlib1g libstdc++6  the BPF addon's shared libraries (ldd kbp_native.node); node needs libstdc++6 too
#   libnetfilter-conntrack3 libmnl0    the nftables addon's (ldd kbp_nft.node; libnftables1 comes with nftables):
#                                      the nftables and IPVS modes, and conntrack cleanup of UDP flows
#   iproute2                           `ip -j addr/link` (node addresses, devices)
#   nftables                           `nft -f -` for the masquerade table
#   mount                              mounting bpffs / cgroup v2 when the host has none mounted
#   kmod                               modprobe, for an IPVS mode (ip_vs* modules from the host's /lib/modules)
# ipvsadm and ipset are not needed: the IPVS mode programs IPVS over netlink itself (kbp_netlink.node,
# no libraries), and masquerade stays in nftables. No apt and no perl (variant essential, merged-usr hook): the base is ~72 MB, Node ~127 MB.
BASE_PACKAGES=(libbpf1 libelf1 zlib1g libstdc++6 libnetfilter-conntrack3 libmnl0 iproute2 nftables mount kmod)
# merged-usr: /usr merged by mmdebstrap's hook, not by the usrmerge package (which drags in perl)
MMDEBSTRAP_ARGS=(--variant=essential --aptopt='APT::Install-Recommends "false"'
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*')

log() { echo "build-image: $*" >&2; }
die() { echo "build-image: $*" >&2; exit 1; }

for tool in podman runc mmdebstrap sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install podman runc mmdebstrap)"
done
[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap and rootful podman)"

NODE_BIN=${NODE_BIN:-$(command -v node)}
NODE_BIN=$(readlink -f "$NODE_BIN")
node_major=$("$NODE_BIN" -p 'process.versions.node.split(".")[0]')
[[ $node_major == 24 ]] || die "NODE_BIN $NODE_BIN is Node $node_major; the image runs Node 24 (bash scripts/setup.sh installs it)"

# every addon: one per data plane (kbp_native BPF, kbp_nft nftables and IPVS's helper table, kbp_netlink IPVS)
# and kbp_maglev, the Maglev fill compiled (optional: without it the plan fills in JavaScript)
ADDONS=(kbp_native kbp_nft kbp_netlink kbp_maglev)
INPUTS=(dist/kube-bpf-proxy.mjs bin/kube-bpf-proxy.js bin/bundle-fresh.js bpf/kbp.bpf.o bpf/lb_sock_term.bpf.o package.json)
for a in "${ADDONS[@]}"; do INPUTS+=("native/build/Release/$a.node"); done
for f in "${INPUTS[@]}"; do [[ -f $f ]] || die "$f is missing: run npm run build first"; done
[[ -d dist/kube-bpf-proxy-compile-cache ]] || die "dist/kube-bpf-proxy-compile-cache is missing: run npm run build first"

has_image() { "${PODMAN[@]}" image exists "$1"; }
work=$(mktemp -d /tmp/kbp-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- the base: Debian 12 with the runtime packages --------------------------------------------------
base_hash=$(printf '%s\n' "$SUITE" "${BASE_PACKAGES[@]}" "${MMDEBSTRAP_ARGS[@]}" | sha256sum | cut -c1-12)
BASE="$REPO-base:$SUITE-$base_hash"
if [[ -n ${KBP_BASE_REBUILD:-} ]] || ! has_image "$BASE"; then
  log "base $BASE: mmdebstrap $SUITE with ${BASE_PACKAGES[*]}"
  start=$SECONDS
  # shellcheck disable=SC2016 # $1 is the hook's argument (the root), expanded by mmdebstrap's shell
  mmdebstrap "${MMDEBSTRAP_ARGS[@]}" --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$work/rootfs.tar" >&2
  "${PODMAN[@]}" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/rootfs.tar" "$BASE" >/dev/null
  rm -f "$work/rootfs.tar"
  log "base built in $((SECONDS - start)) s"
fi

# --- the agent image ----------------------------------------------------------------------------------
ctx=$work/ctx
mkdir -p "$ctx/app/dist" "$ctx/app/bin" "$ctx/app/native/build/Release" "$ctx/app/bpf"
cp "$NODE_BIN" "$ctx/node"
# the bundle is an entry file and its chunks (scripts/bundle.mjs)
cp dist/*.mjs "$ctx/app/dist/"
# V8's code for the chunks, compiled by this node at the build (src/cli/compile-cache.ts)
cp -r dist/kube-bpf-proxy-compile-cache "$ctx/app/dist/"
cp bin/kube-bpf-proxy.js bin/bundle-fresh.js "$ctx/app/bin/"
for a in "${ADDONS[@]}"; do cp "native/build/Release/$a.node" "$ctx/app/native/build/Release/"; done
cp bpf/kbp.bpf.o bpf/lb_sock_term.bpf.o "$ctx/app/bpf/"
cp package.json "$ctx/app/"
cp deploy/Containerfile.local "$ctx/Containerfile"
hash=$( (echo "$BASE"; cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-12)
IMAGE="$REPO:$VERSION-$hash"

if has_image "$IMAGE"; then
  log "$IMAGE is up to date"
else
  log "building $IMAGE"
  start=$SECONDS
  "${PODMAN[@]}" build "${ULIMITS[@]}" --layers=false --pull=never --build-arg "BASE=$BASE" \
    --label "org.opencontainers.image.version=$VERSION" --label "io.kube-bpf-proxy.inputs=$hash" \
    -f "$ctx/Containerfile" -t "$IMAGE" "$ctx" >&2
  log "built in $((SECONDS - start)) s"
fi
"${PODMAN[@]}" tag "$IMAGE" "$REPO:$VERSION"

# untag earlier builds of this version and earlier bases (tags only: other images stay untouched)
while read -r ref; do
  [[ $ref == "$IMAGE" || $ref == "$REPO:$VERSION" || $ref == "$BASE" ]] && continue
  [[ $ref == "$REPO:$VERSION-"* || $ref == "$REPO-base:$SUITE-"* ]] || continue
  log "removing older $ref"
  "${PODMAN[@]}" rmi "$ref" >/dev/null 2>&1 || log "could not remove $ref (in use?)"
done < <("${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' | sort -u)

size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
log "$IMAGE ($REPO:$VERSION): $((size / 1000000)) MB"
echo "$IMAGE"
