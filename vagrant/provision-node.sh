#!/usr/bin/env bash
# Every node: containerd, kubeadm/kubelet/kubectl, the agent's build dependencies.
set -euxo pipefail
NODE_IP=$1
apt-get update
apt-get install -y containerd apt-transport-https ca-certificates curl gpg clang llvm libbpf-dev bpftool nftables
mkdir -p /etc/containerd && containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml
systemctl restart containerd
modprobe br_netfilter && echo br_netfilter > /etc/modules-load.d/k8s.conf
sysctl -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
swapoff -a
install -d /etc/apt/keyrings
curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.31/deb/Release.key | gpg --dearmor -o /etc/apt/keyrings/kubernetes.gpg
echo 'deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /' > /etc/apt/sources.list.d/kubernetes.list
apt-get update && apt-get install -y kubelet kubeadm kubectl
echo "KUBELET_EXTRA_ARGS=--node-ip=${NODE_IP}" > /etc/default/kubelet
systemctl restart kubelet
