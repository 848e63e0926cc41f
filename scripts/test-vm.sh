#!/usr/bin/env bash
# The VM test tier (`npm run test:vm`): boots Debian 12's own 6.1 kernel under qemu (software
# emulation; no KVM needed) with a busybox initramfs, shares this checkout read-only over 9p, and runs
# test/vm/guest.ts as root inside: the loader with a pin root (every program must pass 6.1's
# verifier), attachment of every hook, the datapath table (test/datapath/datapath.test.ts) and the
# socket hooks with real sockets in a network namespace (test/datapath/sock.test.ts). The
# guest's code is bundled here first (test/vm/bundle.mjs; ava's API from test/vm/mini-ava.ts), so the
# VM runs plain JavaScript: tsx and ava's workers cost minutes under emulation.
# The machine's own kernel is far newer, so this is where an older verifier or helper set shows.
#
# Cached in .vm/ (gitignored): the kernel package, extracted (never installed), and the initramfs,
# rebuilt only when one of its inputs changes. Exit code: the guest's (0 = every check passed); 0
# with "vm tier skipped: <reason>" when qemu or the kernel package cannot be had.
#
# Environment: KBP_VM_TIMEOUT (seconds, default 300), KBP_VM_KERNEL (a package version such as
# 6.1.0-56-amd64; default: the newest cached, else the newest apt knows), KBP_VM_SMP (default 2),
# KBP_BPF_OBJECT (another build of kbp.bpf.o inside the checkout, e.g. under .vm/, to try a fix).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
VM=$REPO/.vm
TIMEOUT=${KBP_VM_TIMEOUT:-300}
SMP=${KBP_VM_SMP:-2}

skip() { echo "vm tier skipped: $*"; exit 0; }
die() { echo "vm: $*" >&2; exit 1; }

# everything this run creates is listed here and removed on any exit (a signal included)
TMPS=()
QPID=
WPID=
cleanup() {
  set +e # under set -e, killing an already ended process would end the cleanup early
  [[ -n $QPID ]] && kill "$QPID" 2>/dev/null
  [[ -n $WPID ]] && kill "$WPID" 2>/dev/null
  wait 2>/dev/null
  ((${#TMPS[@]})) && rm -rf "${TMPS[@]}"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86; scripts/setup.sh installs it)"
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] || skip "busybox is not installed (Debian package busybox)"
[[ $(id -u) -eq 0 ]] || skip "needs root (apt-get download and 9p sharing of the checkout)"
[[ -f bpf/kbp.bpf.o ]] || die "bpf/kbp.bpf.o is missing: run npm run build (or bash scripts/setup.sh)"
NATIVE=native/build/Release/kbp_native.node
[[ -f $NATIVE ]] || die "$NATIVE is missing: run npm run build (or bash scripts/setup.sh)"
[[ -d node_modules/esbuild ]] || die "node_modules is missing: run bash scripts/setup.sh"
# the path travels on the kernel command line, which splits at spaces
[[ $REPO != *[[:space:]]* ]] || die "the checkout's path ($REPO) holds a space; the VM tier needs one without"
mkdir -p "$VM"
# another build of the object (an experiment): it must lie inside the checkout, the guest's only view
OBJ_ARG=
if [[ -n ${KBP_BPF_OBJECT:-} ]]; then
  obj=$(realpath "$KBP_BPF_OBJECT")
  [[ -f $obj && $obj == "$REPO"/* && $obj != *' '* ]] || die "KBP_BPF_OBJECT=$KBP_BPF_OBJECT: not a file inside $REPO"
  OBJ_ARG=" kbp.object=$obj"
fi

# ---- the kernel: Debian's linux-image-6.1.0-N-amd64, downloaded and extracted once ----------------
# one run at a time fills the cache (npm test may run while someone runs test:vm)
exec 9>"$VM/.lock"
flock 9
pick_kernel() {
  if [[ -n ${KBP_VM_KERNEL:-} ]]; then echo "$KBP_VM_KERNEL"; return; fi
  local cached
  cached=$(find "$VM" -maxdepth 1 -type d -name 'kernel-6.1.0-*-amd64' -printf '%f\n' 2>/dev/null | sed 's/^kernel-//' | sort -V | tail -1)
  if [[ -n $cached && -f $VM/kernel-$cached/.complete ]]; then echo "$cached"; return; fi
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null | awk '{print $1}' | sed 's/^linux-image-//' | sort -V | tail -1
}
KVER=$(pick_kernel)
[[ -n $KVER ]] || skip "apt knows no linux-image-6.1.0-*-amd64 package (not Debian 12, or apt-get update needed)"
KDIR=$VM/kernel-$KVER
if [[ ! -f $KDIR/.complete ]]; then
  echo "vm: fetching linux-image-$KVER (once; cached in .vm/)"
  dl=$(mktemp -d "$VM/dl.XXXXXX")
  TMPS+=("$dl")
  # apt's sandbox user cannot write to the checkout; the download itself is fine as root
  if ! (cd "$dl" && apt-get download -q "linux-image-$KVER" >/dev/null 2>"$dl/err"); then
    if [[ -n ${KBP_VM_KERNEL:-} ]]; then die "apt-get download linux-image-$KVER failed: $(tail -1 "$dl/err")"; fi
    skip "apt-get download linux-image-$KVER failed: $(tail -1 "$dl/err")"
  fi
  rm -rf "$KDIR"
  dpkg-deb -x "$dl"/linux-image-*.deb "$KDIR"
  touch "$KDIR/.complete"
fi
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
MODDIR=$KDIR/lib/modules/$KVER
[[ -f $VMLINUZ && -d $MODDIR ]] || die "$KDIR is incomplete (no vmlinuz or modules); remove it and rerun"

# ---- the initramfs ---------------------------------------------------------------------------------
# Modules the guest needs, beyond the built-in BPF: virtio + 9p for the checkout, overlay for a
# writable view of it (tests may write beside themselves), clsact and cls_bpf for tc attachment. Their
# dependencies come from each module's .modinfo (the package ships no modules.dep: depmod runs at
# install, and kmod may be absent).
WANT_MODULES=(virtio_pci 9pnet_virtio 9p overlay sch_ingress cls_bpf)
declare -A MODPATH=()
while IFS= read -r -d '' f; do
  n=${f##*/}; n=${n%.ko}; MODPATH[${n//-/_}]=$f
done < <(find "$MODDIR/kernel" -name '*.ko' -print0)
declare -A SEEN=()
ORDER=()
add_module() {
  local m=${1//-/_} d
  [[ -n ${SEEN[$m]:-} ]] && return 0
  SEEN[$m]=1
  [[ -n ${MODPATH[$m]:-} ]] || return 0 # built in
  for d in $(tr '\0' '\n' <"${MODPATH[$m]}" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '); do add_module "$d"; done
  ORDER+=("$m")
}
for m in "${WANT_MODULES[@]}"; do add_module "$m"; done

NODE=$(node -p process.execPath)
# host files copied into the initramfs at their own paths: node and busybox with their shared
# libraries, the addon's libraries (the addon itself is read from the checkout), and the real ip and
# nsenter (busybox's have no network namespaces) with theirs.
# iproute2's ip and util-linux's nsenter for the socket hook tests' network namespace
TOOLS=()
for t in ip nsenter; do
  p=$(command -v "$t") || die "$t is missing (Debian packages iproute2, util-linux; scripts/setup.sh installs them)"
  TOOLS+=("$(realpath "$p")")
done
LIBS_OF=("$NODE" "$BUSYBOX" "$REPO/$NATIVE" "${TOOLS[@]}")
host_files() {
  local f
  printf '%s\n' "$NODE" "$BUSYBOX" "${TOOLS[@]}"
  for f in "${LIBS_OF[@]}"; do
    ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' || true
  done
}
mapfile -t FILES < <(host_files | sort -u)
INITRD=$VM/initramfs-$KVER.cpio
STAMP=$( {
  for f in "${FILES[@]}" test/vm/init.sh scripts/test-vm.sh; do stat -L -c '%n %s %Y' "$f"; done
  printf '%s\n' "${ORDER[@]}"
} | md5sum | cut -d' ' -f1)
if [[ ! -f $INITRD || $(cat "$INITRD.stamp" 2>/dev/null) != "$STAMP" ]]; then
  echo "vm: building the initramfs (${#FILES[@]} host files, modules: ${ORDER[*]})"
  root=$(mktemp -d "$VM/initramfs.XXXXXX")
  TMPS+=("$root" "$INITRD.tmp")
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,mnt,etc,modules}
  ln -s ../run "$root/var/run" 2>/dev/null || { mkdir -p "$root/var" && ln -s ../run "$root/var/run"; }
  for f in "${FILES[@]}"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
  # lib paths of a usrmerged host: /lib -> /usr/lib
  for d in lib lib64; do
    if [[ -L /$d && ! -e $root/$d ]]; then ln -s "$(readlink /$d)" "$root/$d"; fi
  done
  # the guest runs `node` from PATH: the host's may live elsewhere (setup.sh's Node 24 is under /opt)
  [[ -e $root/usr/bin/node ]] || ln -s "$NODE" "$root/usr/bin/node"
  if [[ $BUSYBOX != /bin/busybox ]]; then cp -L "$BUSYBOX" "$root/bin/busybox"; fi
  for a in $("$BUSYBOX" --list); do
    [[ -e $root/bin/$a ]] || ln -s busybox "$root/bin/$a"
  done
  i=0
  for m in "${ORDER[@]}"; do
    i=$((i + 1))
    cp "${MODPATH[$m]}" "$root/modules/$(printf '%02d' $i)-$m.ko"
  done
  cp test/vm/init.sh "$root/init"
  chmod 755 "$root/init"
  # uncompressed: the guest unpacks it in a blink, while gunzip under emulation takes seconds
  (cd "$root" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  echo "$STAMP" >"$INITRD.stamp"
  rm -rf "$root"
fi
# a private copy for this boot: a concurrent run may rebuild the cached one
RUN=$(mktemp -d "$VM/run.XXXXXX")
TMPS+=("$RUN")
ln "$INITRD" "$RUN/initramfs.cpio" 2>/dev/null || cp "$INITRD" "$RUN/initramfs.cpio"
exec 9>&-

# ---- the guest's code: bundled here (esbuild natively takes a second, tsx in the VM a minute) -------
node test/vm/bundle.mjs "$RUN/build" || die "bundling test/vm/guest.ts and the datapath tests failed"

# ---- boot ------------------------------------------------------------------------------------------
echo "vm: booting linux $KVER (qemu TCG, $SMP cpus, timeout ${TIMEOUT}s)"
start=$(date +%s)
qemu-system-x86_64 \
  -machine q35,accel=tcg -cpu max -smp "$SMP" -m 2048 \
  -kernel "$VMLINUZ" -initrd "$RUN/initramfs.cpio" \
  -append "console=ttyS0 quiet panic=-1 kbp.repo=$REPO kbp.kver=$KVER kbp.build=$RUN/build$OBJ_ARG" \
  -virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -nographic -no-reboot -nic none -monitor none -serial stdio </dev/null \
  > >(sed -u 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g; s/\r$//') &
QPID=$! # qemu's, not the filter's: the filter ends when qemu closes its output
# the watchdog ends qemu (by its PID) when the overall time runs out
(
  sleep "$TIMEOUT" &
  spid=$!
  trap 'kill $spid 2>/dev/null; exit 0' TERM
  wait $spid
  if kill -0 "$QPID" 2>/dev/null; then
    echo "vm: timeout after ${TIMEOUT}s; killing qemu (pid $QPID)"
    kill "$QPID" 2>/dev/null
  fi
) &
WPID=$!
set +e
wait "$QPID"
qrc=$?
set -e
QPID=
secs=$(( $(date +%s) - start ))

# isa-debug-exit: qemu exits with (code << 1) | 1, and the guest's codes are small; an even status,
# or 128 + a signal (the watchdog's kill), means the guest never reported
if (( qrc % 2 == 1 && qrc < 128 )); then
  rc=$(( qrc >> 1 ))
  echo "vm: guest finished with exit code $rc in ${secs}s"
  exit "$rc"
fi
echo "vm: qemu ended with status $qrc after ${secs}s without the guest reporting a result (boot failure, panic or timeout)"
exit 1
