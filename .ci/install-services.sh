#!/usr/bin/env bash
# Real services the backend tests use (tests/services/): a Docker engine, an OpenSSH server, a
# one-node Slurm with munge, and busybox-static for the images the Docker tests `docker import`.
# Packages only: each test fixture starts (and stops) its own daemon in a temp dir. Idempotent
# and quiet: installs only what is missing; needs root (or sudo). Facts:
# ../shared/reference/services_on_this_machine.md
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export PATH="$PATH:/usr/sbin:/sbin"
need=()
for pair in docker.io:dockerd openssh-server:sshd slurm-wlm:slurmctld slurm-client:sbatch munge:munged busybox-static:busybox; do
    pkg=${pair%%:*} tool=${pair##*:}
    command -v "$tool" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt() { $SUDO apt-get "$@" >>"$log" 2>&1 || { cat "$log" >&2; exit 1; }; }
apt update -qq
# Installing a daemon package must not start it here (no init system; the fixtures start them).
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null; $SUDO chmod +x "$policy"; made_policy=1; fi
apt install -y -qq --no-install-recommends "${need[@]}"
if [ -n "$made_policy" ]; then $SUDO rm -f "$policy"; fi
