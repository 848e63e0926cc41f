#!/usr/bin/env bash
# Control plane: kubeadm init without the kube-proxy addon, a pod network, the agent's image and DaemonSet.
set -euxo pipefail
CP_IP=$1
kubeadm init --apiserver-advertise-address="$CP_IP" --pod-network-cidr=10.244.0.0/16 \
  --skip-phases=addon/kube-proxy --token abcdef.0123456789abcdef --token-ttl 0
mkdir -p /root/.kube && cp /etc/kubernetes/admin.conf /root/.kube/config
# flannel needs the API server address when no kube-proxy provides the kubernetes Service
kubectl apply -f https://github.com/flannel-io/flannel/releases/latest/download/kube-flannel.yml
cd /kube-bpf-proxy
# The image is built on the host and imported on every node before this step (vagrant/README.md):
#   docker build -t kube-bpf-proxy:0.1.0 -f deploy/Dockerfile . &&
#   for n in cp w1 w2; do docker save kube-bpf-proxy:0.1.0 | vagrant ssh $n -c 'sudo ctr -n k8s.io images import -'; done
kubectl apply -f deploy/kube-bpf-proxy.yaml
kubectl apply -f examples/seeds/
