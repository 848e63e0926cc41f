#!/usr/bin/env bash
# The VM cluster tier (`npm run test:vm-cluster`; not part of `npm test`: it takes minutes): what the
# Vagrant lab (vagrant/) would prove, on this machine. Boots KBP_VM_NODES (default 2) VMs from Debian
# 12's own 6.1 kernel under qemu TCG, each with a virtio NIC on one shared segment (qemu socket
# networking: a multicast group on 127.0.0.1, so no frame leaves this machine). Inside each VM
# (test/vm/cluster-guest.ts): node address 192.168.77.1i, pods as network namespaces on veths with a
# routed pod network 10.244.i.0/24 (routes to the other nodes' via their node addresses), a real
# server in the server pod, and the agent in the VM's own network namespace with --devices eth0,
# started from one manifests folder the host writes here (the namespace lab's ClusterIP and NodePort
# with EndpointSlices over the pods of every VM, and the Nodes). init leaves bpffs and cgroup v2
# unmounted, as on a new machine: the agent prepares them. Checks, with curl as the client: the
# ClusterIP from a pod and from the node reaches the pods of every VM; the NodePort on the next VM's
# address reaches them too (the pods of other VMs seeing that VM's address: its masquerade); dump -o
# json equals compile -o json on every node.
# The agent runs from this checkout (bundled here like the guest), not from the image's root
# filesystem (scripts/build-image.sh; npm run test:image runs that image in the lab).
#
# Exit code: 0 only when every VM reported that every check passed; a summary of each VM's checks
# ends the output. 0 with "vm tier skipped: <reason>" when qemu or the kernel package cannot be had.
#
# Environment: KBP_VM_NODES (2 or 3), KBP_VM_TIMEOUT (seconds for the whole run, default 900),
# KBP_VM_MEM (MiB per VM, default 1024: the agent's maps take ~290 MiB of kernel memory at their
# default sizes, and at 512 MiB the kernel killed the agent at load), KBP_VM_SOCKET_LB (true, the default, or false: the agents
# run with --socket-lb false, so ClusterIP traffic takes the tc path), KBP_VM_KERNEL (as for test-vm.sh).
set -euo pipefail
source "$(dirname "$0")/vm-lib.sh"
COUNT=${KBP_VM_NODES:-2}
TIMEOUT=${KBP_VM_TIMEOUT:-900}
MEM=${KBP_VM_MEM:-1024}
SOCKET_LB=${KBP_VM_SOCKET_LB:-true}
[[ $COUNT =~ ^[23]$ ]] || die "KBP_VM_NODES=$COUNT: 2 or 3"
[[ $SOCKET_LB == true || $SOCKET_LB == false ]] || die "KBP_VM_SOCKET_LB=$SOCKET_LB: true or false"

vm_setup
vm_kernel
# beyond test-vm.sh's: the NIC (virtio_net), pods' veths, and nftables' masquerade, which the agent
# installs for NodePort traffic to another node's pod (crc32c_generic first: libcrc32c needs a crc32c
# and insmod knows no soft dependencies); nft for that rule, curl as the client, ethtool for the lab's
# pod plumbing
vm_initramfs cluster "virtio_pci 9pnet_virtio 9p overlay sch_ingress cls_bpf virtio_net veth crc32c_generic nf_conntrack nf_nat nf_tables nft_chain_nat nft_masq" \
  "ip nsenter nft curl ethtool"
vm_bundle cluster
node "$RUN/build/cluster-manifests.mjs" "$RUN/manifests" "$COUNT" || die "writing the cluster's manifests failed"
echo "{\"nodes\": $COUNT}" >"$RUN/cluster.json"

# this run's own segment: a port of its own in the multicast group, on loopback only
PORT=$((20000 + RANDOM % 20000))
echo "vm: booting $COUNT VMs of linux $KVER (qemu TCG, 1 cpu and ${MEM} MiB each, segment 230.0.0.1:$PORT on 127.0.0.1, timeout ${TIMEOUT}s)"
start=$(date +%s)
VM_PREFIX=1
QPIDS=()
for i in $(seq 1 "$COUNT"); do
  vm_boot "node$i" 1 "$MEM" "kbp.main=cluster-guest.mjs kbp.node=$i kbp.bare=1 kbp.socket-lb=$SOCKET_LB" \
    -netdev "socket,id=n0,mcast=230.0.0.1:$PORT,localaddr=127.0.0.1" -device "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:0$i,romfile="
  QPIDS+=("$VM_PID")
done
vm_watchdog "$TIMEOUT"

# VMs end in any order; one that ends without a result (a boot failure, a panic) leaves the others
# nothing to check against, so they are stopped at once rather than at their own timeouts
failed=0
declare -A node_of=() result=()
for i in $(seq 1 "$COUNT"); do node_of[${QPIDS[$((i - 1))]}]=$i; done
left=("${QPIDS[@]}")
stopped=
while ((${#left[@]})); do
  rest=()
  stop=
  for p in "${left[@]}"; do
    if kill -0 "$p" 2>/dev/null; then rest+=("$p"); continue; fi
    vm_wait "$p"
    i=${node_of[$p]}
    rc=$(vm_result "$VM_STATUS")
    if [[ $rc == 0 ]]; then
      result[$i]="every check passed"
    elif [[ -n $rc ]]; then
      failed=1
      result[$i]="exit code $rc"
    else
      failed=1
      if [[ -n $stopped ]]; then
        result[$i]="stopped: $stopped ended without a result"
      else
        result[$i]="qemu ended with status $VM_STATUS without the guest reporting a result (boot failure, panic or timeout)"
        stop=node$i
      fi
    fi
  done
  left=("${rest[@]}")
  if [[ -n $stop ]] && ((${#left[@]})); then
    echo "vm: $stop ended without a result; stopping the other VMs (pids ${left[*]})"
    stopped=$stop
    kill "${left[@]}" 2>/dev/null || true
  fi
  ((${#left[@]} == 0)) || sleep 1
done
secs=$(( $(date +%s) - start ))
sleep 1 # the consoles' filters end just after their qemu

echo
echo "vm cluster summary ($COUNT VMs, linux $KVER, socket LB $SOCKET_LB, ${secs}s):"
for i in $(seq 1 "$COUNT"); do
  grep -aE "^\[node$i\] vm-cluster: node$i: (PASS|FAIL)  " "$RUN/node$i.console" | sed 's/^\[[^]]*\] vm-cluster: /  /' || echo "  node$i: no verdicts (see its console above)"
done
for i in $(seq 1 "$COUNT"); do echo "  node$i: ${result[$i]}"; done
if ((failed)); then
  echo "vm cluster: FAIL"
  exit 1
fi
echo "vm cluster: PASS"
