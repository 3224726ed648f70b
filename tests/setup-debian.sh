#!/usr/bin/env bash
# Installs what passthru-image's build and test suite need on a Debian 12 machine. Idempotent: installs only
# what is missing, so a warm machine spends no time here. Needs root (or sudo) and a Rust toolchain.
set -euo pipefail

packages=(
    # building the tool: the ostree crate links libostree
    pkg-config libostree-dev libglib2.0-dev
    # image mode: engines, the offline test base, and inspecting images independently
    podman buildah uidmap fuse-overlayfs debootstrap dracut-core kmod cpio zstd
    # module sources: git fetches a pinned commit; readelf checks the modules built into images
    git binutils
    # live mode: real ostree sysroots; the rpm-ostree test double is a python3 script
    ostree python3
    # test-boot: QEMU and the ext4 disk made from the image
    qemu-system-x86 e2fsprogs
    # mok new: the key pair and certificate are made by the openssl program
    openssl
    # lint: every script in layers/ and tests/ (tests/shellcheck.rs)
    shellcheck
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "setup: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: no cargo on PATH; install a Rust toolchain (rustup, Rust >= 1.89) first" >&2
    exit 1
fi
