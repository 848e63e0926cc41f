#!/usr/bin/env bash
# The VM test tier (`npm run test:vm`): boots Debian 12's own 6.1 kernel under qemu (software
# emulation; no KVM needed) with a busybox initramfs, shares this checkout read-only over 9p, and runs
# test/vm/guest.ts as root inside: the loader with a pin root (every program must pass 6.1's
# verifier), attachment of every hook, the datapath table (test/datapath/datapath.test.ts) and the
# socket hooks with real sockets in a network namespace (test/datapath/sock.test.ts), and IPVS mode
# end to end (test/vm/ipvs-guest.ts: the real agent in a node namespace, pods, real clients). The
# guest's code is bundled here first (test/vm/bundle.mjs; ava's API from test/vm/mini-ava.ts), so the
# VM runs plain JavaScript: tsx and ava's workers cost minutes under emulation.
# The machine's own kernel is far newer, so this is where an older verifier or helper set shows.
# The kernel, the initramfs and the boot are scripts/vm-lib.sh's (shared with test-vm-cluster.sh).
#
# Exit code: the guest's (0 = every check passed); 0 with "vm tier skipped: <reason>" when qemu or
# the kernel package cannot be had.
#
# Environment: KBP_VM_TIMEOUT (seconds, default 900: an upper bound for a loaded machine), KBP_VM_KERNEL (a package version such as
# 6.1.0-56-amd64; default: the newest cached, else the newest apt knows), KBP_VM_SMP (default 2),
# KBP_BPF_OBJECT (another build of kbp.bpf.o inside the checkout, e.g. under .vm/, to try a fix),
# KBP_VM_ONLY (run only the test files whose path holds this word, e.g. ipvs), KBP_VM_MAIN (another
# guest program of the bundle instead of guest.mjs: ipvs-bench.mjs for bench/ipvs.bench.ts) with
# KBP_VM_BENCH (its sizes, e.g. 1000,10000).
set -euo pipefail
source "$(dirname "$0")/vm-lib.sh"
TIMEOUT=${KBP_VM_TIMEOUT:-900}
SMP=${KBP_VM_SMP:-2}

vm_setup
# another build of the object (an experiment): it must lie inside the checkout, the guest's only view
OBJ_ARG=
if [[ -n ${KBP_BPF_OBJECT:-} ]]; then
  obj=$(realpath "$KBP_BPF_OBJECT")
  [[ -f $obj && $obj == "$REPO"/* && $obj != *' '* ]] || die "KBP_BPF_OBJECT=$KBP_BPF_OBJECT: not a file inside $REPO"
  OBJ_ARG="kbp.object=$obj"
fi
# KBP_VM_ONLY=WORD: only the guest's test files whose path holds WORD (e.g. ipvs), no loader checks
if [[ -n ${KBP_VM_ONLY:-} ]]; then
  [[ $KBP_VM_ONLY =~ ^[a-z0-9_-]+$ ]] || die "KBP_VM_ONLY=$KBP_VM_ONLY: one word of a-z, 0-9, - and _"
  OBJ_ARG="$OBJ_ARG kbp.only=$KBP_VM_ONLY"
fi
if [[ -n ${KBP_VM_MAIN:-} ]]; then
  [[ $KBP_VM_MAIN =~ ^[a-z0-9-]+\.mjs$ ]] || die "KBP_VM_MAIN=$KBP_VM_MAIN: a file name of the bundle (e.g. ipvs-bench.mjs)"
  [[ ${KBP_VM_BENCH:-1000} =~ ^[0-9,]+$ ]] || die "KBP_VM_BENCH=$KBP_VM_BENCH: sizes such as 1000,10000"
  OBJ_ARG="$OBJ_ARG kbp.main=$KBP_VM_MAIN kbp.bench=${KBP_VM_BENCH:-1000}"
fi
# the guest bounds its own run by this too, so it reports and cleans up before the watchdog
OBJ_ARG="$OBJ_ARG kbp.timeout=$TIMEOUT"
vm_kernel
# virtio + 9p for the checkout, overlay for a writable view of it (tests may write beside
# themselves), clsact and cls_bpf for tc attachment; iproute2's ip and util-linux's nsenter for the
# socket hook tests' network namespace. For IPVS mode: veth and dummy, IPVS with the rr and mh
# schedulers, ctnetlink (the UDP conntrack flush, libnetfilter_conntrack in kbp_nft), and the nftables expressions of its helper table
# (crc32c_generic first: libcrc32c needs a crc32c and insmod knows no soft dependencies); nft to
# check that cleanup removed the table, ethtool for the lab's pods (tx checksum offload off); sctp
# and socat for SCTP clients and servers through an IPVS virtual server; ipvsadm for the IPVS bench's
# baseline (left out when the host lacks it: only the bench needs it)
tools="ip nsenter nft ethtool socat"
[[ -x /usr/sbin/ipvsadm ]] && tools="$tools ipvsadm"
vm_initramfs datapath "virtio_pci 9pnet_virtio 9p overlay sch_ingress cls_bpf veth dummy crc32c_generic nf_conntrack nf_nat nf_tables nft_chain_nat nft_masq nft_ct nft_reject_inet nft_numgen nft_fib_inet nft_nat nft_limit nf_conntrack_netlink ip_vs ip_vs_rr ip_vs_mh sctp" "$tools"
vm_bundle

echo "vm: booting linux $KVER (qemu TCG, $SMP cpus, timeout ${TIMEOUT}s)"
start=$(date +%s)
vm_boot vm "$SMP" 2048 "$OBJ_ARG" -nic none
QPID=$VM_PID
vm_watchdog "$TIMEOUT"
vm_wait "$QPID"
secs=$(( $(date +%s) - start ))
rc=$(vm_result "$VM_STATUS")
if [[ -n $rc ]]; then
  echo "vm: guest finished with exit code $rc in ${secs}s"
  exit "$rc"
fi
echo "vm: qemu ended with status $VM_STATUS after ${secs}s without the guest reporting a result (boot failure, panic or timeout)"
exit 1
