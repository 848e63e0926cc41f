#!/bin/sh
# PID 1 of the test VMs (scripts/vm-lib.sh copies it to /init of the initramfs). Mounts what the
# data plane needs (proc, sysfs, devtmpfs, bpffs, cgroup v2 at the host's path), the checkout at its
# host path (9p, read-only, under a tmpfs overlay so tests can write where they like) and the host's
# node folder at /mnt/node (9p, read-only), runs the guest
# program kbp.main= (default guest.mjs: test/vm/guest.ts, bundled on the host into kbp.build=) and
# hands its exit code to qemu through isa-debug-exit. Nothing here outlives the VM, so nothing is
# unmounted. kbp.bare=1 leaves bpffs and cgroup v2 unmounted, as on a new machine, for the agent to
# prepare (the cluster tier); kbp.node=N reaches the guest as KBP_VM_NODE.
# the host's tools (ip, nsenter in /usr) before busybox's applets of the same name (in /bin)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp TMPDIR=/tmp

fail() {
  echo "vm-init: $*"
  report 2
}
# qemu exits with (code << 1) | 1 when a byte is written to port 0xf4 (isa-debug-exit)
report() {
  printf "\\$(printf '%03o' "$1")" | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
  # not reached when the device is there; without it, end the VM with an even (= failed) status
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
case " $(cat /proc/cmdline) " in
  *" kbp.bare=1 "*) ;;
  *)
    mount -t bpf bpf /sys/fs/bpf || fail "mount bpffs"
    mount -t tmpfs tmpfs /sys/fs/cgroup
    mkdir -p /sys/fs/cgroup/unified
    mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified || fail "mount cgroup2"
    ;;
esac

for m in /modules/*.ko; do
  insmod "$m" || fail "insmod $m"
done

repo=
kver=
main=guest.mjs
for arg in $(cat /proc/cmdline); do
  case $arg in
    kbp.repo=*) repo=${arg#kbp.repo=} ;;
    kbp.kver=*) kver=${arg#kbp.kver=} ;;
    kbp.object=*) export KBP_BPF_OBJECT=${arg#kbp.object=} ;;
    kbp.build=*) export KBP_VM_BUILD=${arg#kbp.build=} ;;
    kbp.main=*) main=${arg#kbp.main=} ;;
    kbp.node=*) export KBP_VM_NODE=${arg#kbp.node=} ;;
  esac
done
[ -n "$repo" ] || fail "no kbp.repo= on the kernel command line"

mkdir -p /mnt/repo /mnt/rw "$repo"
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,ro repo /mnt/repo || fail "mount the 9p share"
# the host's node, from its own folder (scripts/vm-lib.sh); /usr/bin/node points here
mkdir -p /mnt/node
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,ro node /mnt/node || fail "mount the host's node folder (9p)"
mount -t tmpfs tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/repo,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work "$repo" || fail "mount the overlay over $repo"
ip link set lo up 2>/dev/null
# another build of the object (KBP_BPF_OBJECT on the host) replaces bpf/kbp.bpf.o in the overlay
# only, so every user in the guest (the loader's default, the lab helpers) runs the same build
if [ -n "$KBP_BPF_OBJECT" ]; then
  cp "$KBP_BPF_OBJECT" "$repo/bpf/kbp.bpf.o" || fail "copy $KBP_BPF_OBJECT over bpf/kbp.bpf.o in the overlay"
  echo "vm-init: bpf/kbp.bpf.o is $KBP_BPF_OBJECT in this VM (the host's file is untouched)"
fi

cd "$repo" || fail "cd $repo"
echo "vm-init: linux $(uname -r), $(nproc) cpus, node $(node --version), checkout at $repo"
[ -n "$KBP_VM_BUILD" ] || fail "no kbp.build= on the kernel command line"
KBP_VM_KVER=$kver node "$KBP_VM_BUILD/$main"
rc=$?
# qemu's exit status holds (code << 1) | 1, so codes above 63 would read as signals or overflow
if [ "$rc" -gt 63 ]; then
  echo "vm-init: the guest runner ended with status $rc"
  rc=3
fi
report "$rc"
