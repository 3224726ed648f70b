#!/usr/bin/env bash
# The whole test suite, set-up included: lint, unit and integration tests, and the end-to-end tests that
# build real images with podman, drive real ostree sysroots and boot images under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup-debian.sh
# podman cannot create the cgroups it wants on hybrid-cgroup machines; chroot isolation builds anywhere.
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
