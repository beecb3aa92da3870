#!/usr/bin/env bash
# Host tools the disk-image stage (disk_images/, `make image`, tests/test_disk_images*.py) uses:
#   e2fsprogs  debugfs, e2fsck, resize2fs, mke2fs (rootless filesystem access, grow, test images)
#   fdisk      sfdisk (MBR/GPT read and edit)      gdisk  sgdisk (GPT: move the backup header)
#   fuse2fs    rootless mount, where the distribution has it
#   (docker.io, busybox-static: .ci/install-services.sh)
# Idempotent and quiet: installs only what is missing; needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need=()
for pair in e2fsprogs:debugfs fdisk:sfdisk gdisk:sgdisk; do  # docker.io + busybox-static arrive with the Docker path
    pkg=${pair%%:*} tool=${pair##*:}
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 \
        || need+=("$pkg")
done
if ! PATH="$PATH:/usr/sbin:/sbin" command -v fuse2fs >/dev/null 2>&1; then
    need+=(fuse2fs?)
fi
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt() { $SUDO apt-get "$@" >>"$log" 2>&1 || { cat "$log" >&2; exit 1; }; }
apt update -qq
for pkg in "${need[@]}"; do
    if [ "$pkg" = "fuse2fs?" ]; then
        # fuse2fs is its own package on newer Debian/Ubuntu and part of e2fsprogs before; optional.
        if apt-cache show fuse2fs >/dev/null 2>&1; then
            apt install -y -qq fuse2fs
        fi
        continue
    fi
    apt install -y -qq --no-install-recommends "$pkg"
done
