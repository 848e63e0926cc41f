#!/usr/bin/env bash
# Control plane: kubeadm init without the kube-proxy addon, the agent's DaemonSet, a pod network, the
# Services of seed 001 over real pods. The agent's image must be imported on every node first (vagrant/README.md).
set -euxo pipefail
CP_IP=$1
KUBE_VERSION=v1.31.4        # = KUBE_PKG_VERSION of provision-node.sh
FLANNEL_VERSION=v0.26.1
kubeadm init --kubernetes-version="$KUBE_VERSION" --apiserver-advertise-address="$CP_IP" \
  --pod-network-cidr=10.244.0.0/16 --skip-phases=addon/kube-proxy \
  --token abcdef.0123456789abcdef --token-ttl 0
mkdir -p /root/.kube
cp /etc/kubernetes/admin.conf /root/.kube/config
cd /kube-bpf-proxy
# the agent first: it reaches the API server at the ConfigMap's apiserver.host (this node), and then
# serves the kubernetes Service that flannel and everything else use
kubectl apply -f deploy/kube-bpf-proxy.yaml
kubectl apply -f "https://github.com/flannel-io/flannel/releases/download/${FLANNEL_VERSION}/kube-flannel.yml"
kubectl apply -f vagrant/workloads.yaml
