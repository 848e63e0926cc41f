#!/usr/bin/env bash
# Every node: containerd and kubeadm/kubelet/kubectl at one pinned version. The agent runs from its
# image (imported by hand, vagrant/README.md), so nodes need no build tools.
set -euxo pipefail
NODE_IP=$1
# pinned: the minor line of the package repository and the exact package version (kubeadm init
# uses the same version, provision-cp.sh)
KUBE_MINOR=v1.31
KUBE_PKG_VERSION=1.31.4-1.1

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y containerd apt-transport-https ca-certificates curl gpg
mkdir -p /etc/containerd
containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' > /etc/containerd/config.toml
systemctl restart containerd
modprobe br_netfilter
echo br_netfilter > /etc/modules-load.d/k8s.conf
sysctl -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
swapoff -a
install -d /etc/apt/keyrings
curl -fsSL "https://pkgs.k8s.io/core:/stable:/${KUBE_MINOR}/deb/Release.key" | gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes.gpg
echo "deb [signed-by=/etc/apt/keyrings/kubernetes.gpg] https://pkgs.k8s.io/core:/stable:/${KUBE_MINOR}/deb/ /" > /etc/apt/sources.list.d/kubernetes.list
apt-get update
apt-get install -y "kubelet=${KUBE_PKG_VERSION}" "kubeadm=${KUBE_PKG_VERSION}" "kubectl=${KUBE_PKG_VERSION}"
apt-mark hold kubelet kubeadm kubectl
echo "KUBELET_EXTRA_ARGS=--node-ip=${NODE_IP}" > /etc/default/kubelet
systemctl restart kubelet
