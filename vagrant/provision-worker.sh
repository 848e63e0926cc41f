#!/usr/bin/env bash
# A worker joins the control plane at CP_IP with the fixed token of provision-cp.sh.
set -euxo pipefail
CP_IP=$1
kubeadm join "${CP_IP}:6443" --token abcdef.0123456789abcdef --discovery-token-unsafe-skip-ca-verification
