# Shared by the VM tiers (sourced, not run): scripts/test-vm.sh (one VM, the loader and the datapath
# tests) and scripts/test-vm-cluster.sh (two VMs on one virtual segment, the agent in each). Both boot
# Debian 12's own 6.1 kernel under qemu TCG (software emulation; no KVM needed) with a busybox
# initramfs of host files and share this checkout read-only over 9p (test/vm/init.sh is PID 1).
#
# Cached in .vm/ (gitignored): the kernel package, extracted (never installed), and each tier's
# initramfs, rebuilt only when one of its inputs changes. A .vm/kernel-* that is a symlink (to another
# checkout's cache) counts as cached.
#
# The sourcing script sets -euo pipefail first and then calls, in order: vm_setup, vm_kernel,
# vm_initramfs, vm_bundle, then vm_boot per VM, vm_watchdog, and vm_wait/vm_result per VM.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd -P)
VM=$REPO/.vm

skip() { echo "vm tier skipped: $*"; exit 0; }
die() { echo "vm: $*" >&2; exit 1; }

# everything a run creates is listed here and removed on any exit (a signal included); processes by PID
TMPS=()
PIDS=()
cleanup() {
  set +e # under set -e, killing an already ended process would end the cleanup early
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  ((${#TMPS[@]})) && rm -rf "${TMPS[@]}"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---- what every tier needs of the host ---------------------------------------------------------------
vm_setup() {
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
  # the guest's node: this one, shared read-only from its folder (vm_initramfs says why)
  NODE=$(node -p process.execPath)
  [[ $(basename "$NODE") == node ]] || die "node runs as $NODE; the VM tiers share it as <folder>/node"
  mkdir -p "$VM"
}

# ---- the kernel: Debian's linux-image-6.1.0-N-amd64, downloaded and extracted once ----------------
# Sets KVER, VMLINUZ, MODDIR. Takes the cache lock (fd 9) that vm_initramfs releases: one run at a
# time fills the cache (npm test may run while someone runs a VM tier).
vm_kernel() {
  exec 9>"$VM/.lock"
  flock 9
  KVER=$(vm_pick_kernel)
  [[ -n $KVER ]] || skip "apt knows no linux-image-6.1.0-*-amd64 package (not Debian 12, or apt-get update needed)"
  local kdir=$VM/kernel-$KVER dl
  if [[ ! -f $kdir/.complete ]]; then
    echo "vm: fetching linux-image-$KVER (once; cached in .vm/)"
    dl=$(mktemp -d "$VM/dl.XXXXXX")
    TMPS+=("$dl")
    # apt's sandbox user cannot write to the checkout; the download itself is fine as root
    if ! (cd "$dl" && apt-get download -q "linux-image-$KVER" >/dev/null 2>"$dl/err"); then
      if [[ -n ${KBP_VM_KERNEL:-} ]]; then die "apt-get download linux-image-$KVER failed: $(tail -1 "$dl/err")"; fi
      skip "apt-get download linux-image-$KVER failed: $(tail -1 "$dl/err")"
    fi
    rm -rf "$kdir"
    dpkg-deb -x "$dl"/linux-image-*.deb "$kdir"
    touch "$kdir/.complete"
  fi
  VMLINUZ=$kdir/boot/vmlinuz-$KVER
  MODDIR=$kdir/lib/modules/$KVER
  [[ -f $VMLINUZ && -d $MODDIR ]] || die "$kdir is incomplete (no vmlinuz or modules); remove it and rerun"
}

vm_pick_kernel() {
  if [[ -n ${KBP_VM_KERNEL:-} ]]; then echo "$KBP_VM_KERNEL"; return; fi
  local cached
  cached=$(find "$VM" -maxdepth 1 -xtype d -name 'kernel-6.1.0-*-amd64' -printf '%f\n' 2>/dev/null | sed 's/^kernel-//' | sort -V | tail -1)
  if [[ -n $cached && -f $VM/kernel-$cached/.complete ]]; then echo "$cached"; return; fi
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null | awk '{print $1}' | sed 's/^linux-image-//' | sort -V | tail -1
}

# ---- the initramfs ---------------------------------------------------------------------------------
# vm_initramfs NAME MODULES TOOLS: .vm/initramfs-NAME-KVER.cpio (cached by a stamp of its inputs),
# hard-linked into this run's own folder RUN (a concurrent run may rebuild the cached one), then the
# cache lock is released. MODULES: space-separated module names, loaded in this order after their
# dependencies, which come from each module's .modinfo (the package ships no modules.dep: depmod runs
# at install, and kmod may be absent). A module that needs a soft dependency (libcrc32c needs a crc32c
# implementation: crc32c_generic) must list it before itself. TOOLS: host commands copied in at their
# own paths with their shared libraries (busybox's ip and nsenter know no network namespaces).
# Busybox and the libraries of node and the addon are always in; the addon itself is read from the
# checkout, and node (127 MB) from its own folder on the host, shared read-only over 9p like the
# checkout (init.sh mounts it at /mnt/node): in the initramfs it would take its size twice in the
# guest's memory (the image and the unpacked copy), more than a 512 MiB VM can spare.
vm_initramfs() {
  local name=$1 modules=$2 tools=$3 f n m t p d a i
  declare -A modpath=() seen=()
  local order=()
  while IFS= read -r -d '' f; do
    n=${f##*/}; n=${n%.ko}; modpath[${n//-/_}]=$f
  done < <(find "$MODDIR/kernel" -name '*.ko' -print0)
  add_module() {
    local m=${1//-/_} d
    [[ -n ${seen[$m]:-} ]] && return 0
    seen[$m]=1
    [[ -n ${modpath[$m]:-} ]] || return 0 # built in
    for d in $(tr '\0' '\n' <"${modpath[$m]}" | sed -n 's/^depends=//p' | head -1 | tr ',' ' '); do add_module "$d"; done
    order+=("$m")
  }
  for m in $modules; do add_module "$m"; done

  local tool_paths=()
  for t in $tools; do
    # from the system's folders, never PATH: under npm scripts node_modules/.bin comes first, and its
    # `nft` is @vercel/nft's file tracer (src/util/exec.ts resolves tools the same way)
    p=
    for d in /usr/sbin /sbin /usr/bin /bin; do
      if [[ -x $d/$t ]]; then p=$d/$t; break; fi
    done
    [[ -n $p ]] || die "$t is missing on this machine (scripts/setup.sh installs the VM tiers' tools)"
    tool_paths+=("$(realpath "$p")")
  done
  local files
  mapfile -t files < <(
    printf '%s\n' "$BUSYBOX" "${tool_paths[@]}"
    for f in "$NODE" "$BUSYBOX" "$REPO/$NATIVE" "$REPO"/native/build/Release/kbp_*.node "${tool_paths[@]}"; do
      ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}' || true
    done | sort -u
  )
  INITRD=$VM/initramfs-$name-$KVER.cpio
  local stamp root
  stamp=$( {
    for f in "${files[@]}" test/vm/init.sh scripts/vm-lib.sh; do stat -L -c '%n %s %Y' "$f"; done
    printf '%s\n' "${order[@]}"
  } | md5sum | cut -d' ' -f1)
  if [[ ! -f $INITRD || $(cat "$INITRD.stamp" 2>/dev/null) != "$stamp" ]]; then
    echo "vm: building the initramfs $name (${#files[@]} host files, modules: ${order[*]})"
    root=$(mktemp -d "$VM/initramfs.XXXXXX")
    TMPS+=("$root" "$INITRD.tmp")
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,mnt,etc,modules,var}
    ln -s ../run "$root/var/run"
    for f in "${files[@]}"; do
      mkdir -p "$root$(dirname "$f")"
      cp -L "$f" "$root$f"
    done
    # lib paths of a usrmerged host: /lib -> /usr/lib
    for d in lib lib64; do
      if [[ -L /$d && ! -e $root/$d ]]; then ln -s "$(readlink /$d)" "$root/$d"; fi
    done
    # the guest runs `node` from PATH, the host's node shared at /mnt/node (vm_boot, init.sh)
    ln -sfn /mnt/node/node "$root/usr/bin/node"
    if [[ $BUSYBOX != /bin/busybox ]]; then cp -L "$BUSYBOX" "$root/bin/busybox"; fi
    for a in $("$BUSYBOX" --list); do
      [[ -e $root/bin/$a ]] || ln -s busybox "$root/bin/$a"
    done
    i=0
    for m in "${order[@]}"; do
      i=$((i + 1))
      cp "${modpath[$m]}" "$root/modules/$(printf '%02d' $i)-$m.ko"
    done
    cp test/vm/init.sh "$root/init"
    chmod 755 "$root/init"
    # uncompressed: the guest unpacks it in a blink, while gunzip under emulation takes seconds
    (cd "$root" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null) >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    echo "$stamp" >"$INITRD.stamp"
    rm -rf "$root"
  fi
  RUN=$(mktemp -d "$VM/run.XXXXXX")
  TMPS+=("$RUN")
  ln "$INITRD" "$RUN/initramfs.cpio" 2>/dev/null || cp "$INITRD" "$RUN/initramfs.cpio"
  exec 9>&-
}

# ---- the guest's code: bundled here (esbuild natively takes a second, tsx in the VM a minute) -------
# vm_bundle [TIER]: test/vm/bundle.mjs's tier (datapath, the default, or cluster) into $RUN/build
vm_bundle() {
  # NODE_PRESERVE_SYMLINKS: esbuild finds its binary beside itself when node_modules is a symlink
  NODE_PRESERVE_SYMLINKS=1 node test/vm/bundle.mjs "$RUN/build" "${1:-datapath}" || die "bundling the guest's code (test/vm/bundle.mjs) failed"
}

# ---- boot ------------------------------------------------------------------------------------------
# vm_boot NAME SMP MEM APPEND [QEMU ARGS...]: starts one VM in the background (its console on stdout
# and in $RUN/NAME.console, each line prefixed with [NAME] when VM_PREFIX is set, for several VMs) and
# sets VM_PID to qemu's PID. APPEND adds to
# the kernel command line; kbp.repo, kbp.kver and kbp.build are always there, and no_timer_check: on a
# loaded machine the emulated timer can miss the kernel's boot-time check, which then panics ("IO-APIC
# + timer doesn't work!"; seen here at load 25). The guest reports its
# exit code through isa-debug-exit (vm_result decodes qemu's status).
vm_boot() {
  local name=$1 smp=$2 mem=$3 append=$4 prefix=
  shift 4
  [[ -n ${VM_PREFIX:-} ]] && prefix="[$name] "
  qemu-system-x86_64 \
    -name "$name" -machine q35,accel=tcg -cpu max -smp "$smp" -m "$mem" \
    -kernel "$VMLINUZ" -initrd "$RUN/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 no_timer_check kbp.repo=$REPO kbp.kver=$KVER kbp.build=$RUN/build $append" \
    -virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on" \
    -virtfs "local,path=$(dirname "$NODE"),mount_tag=node,security_model=none,readonly=on" \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -nographic -no-reboot -monitor none -serial stdio "$@" </dev/null \
    > >(sed -u "s/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g; s/\r\$//; s/^/$prefix/" | tee "$RUN/$name.console") &
  VM_PID=$! # qemu's, not the filter's: the filter ends when qemu closes its output
  PIDS+=("$VM_PID")
}

# vm_watchdog SECONDS: ends every VM of this run (by PID) when the overall time runs out
vm_watchdog() {
  local limit=$1 qpids=("${PIDS[@]}")
  (
    sleep "$limit" &
    spid=$!
    trap 'kill $spid 2>/dev/null; exit 0' TERM
    wait $spid
    for p in "${qpids[@]}"; do
      if kill -0 "$p" 2>/dev/null; then
        echo "vm: timeout after ${limit}s; killing qemu (pid $p)"
        kill "$p" 2>/dev/null
      fi
    done
  ) &
  PIDS+=("$!")
}

# vm_wait PID: waits for one VM's qemu and sets VM_STATUS to its exit status
vm_wait() {
  set +e
  wait "$1"
  VM_STATUS=$?
  set -e
}

# vm_result STATUS: the guest's exit code, or empty when it never reported one. isa-debug-exit: qemu
# exits with (code << 1) | 1, and the guest's codes are small; an even status, or 128 + a signal (the
# watchdog's kill), means the guest never reported (boot failure, panic or timeout).
vm_result() {
  if (($1 % 2 == 1 && $1 < 128)); then echo $(($1 >> 1)); fi
}
