#!/usr/bin/env bash
# Host tools the disk-image stage (disk_images/, `make image`, tests/test_disk_images*.py) uses:
#   e2fsprogs  debugfs, e2fsck, resize2fs, mke2fs (rootless filesystem access, grow, test images)
#   fdisk      sfdisk (MBR/GPT read and edit)      gdisk  sgdisk (GPT: move the backup header)
#   fuse2fs    rootless mount, where the distribution has it
#   docker.io  the Docker path (dockerd + a locally imported container image; no registry needed)
#   busybox-static  the root filesystem of that container image (`docker import`)
# Idempotent and quiet: installs only what is missing; needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need=()
for pair in e2fsprogs:debugfs fdisk:sfdisk gdisk:sgdisk docker.io:dockerd busybox-static:busybox; do
    pkg=${pair%%:*} tool=${pair##*:}
    command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 \
        || need+=("$pkg")
done
if ! PATH="$PATH:/usr/sbin:/sbin" command -v fuse2fs >/dev/null 2>&1; then
    need+=(fuse2fs?)
fi
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
for pkg in "${need[@]}"; do
    if [ "$pkg" = "fuse2fs?" ]; then
        # fuse2fs is its own package on newer Debian/Ubuntu and part of e2fsprogs before; optional.
        if apt-cache show fuse2fs >/dev/null 2>&1; then
            $SUDO apt-get install -y -qq fuse2fs >/dev/null
        fi
        continue
    fi
    $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
done
