#!/usr/bin/env bash
set -euxo pipefail
kubeadm join 192.168.56.10:6443 --token abcdef.0123456789abcdef --discovery-token-unsafe-skip-ca-verification
