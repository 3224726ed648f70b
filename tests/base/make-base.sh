#!/usr/bin/env bash
# Build the offline test base image (Debian bookworm, bootc layout) into local
# podman storage without any container registry: debootstrap a rootfs, import
# it, then build tests/base/Containerfile on top of it.
#
# Output: progress on stderr; the LAST line on stdout is the image reference
# (localhost/passthru-test-base:<hash>, also tagged :latest).
#
# Env:
#   PASSTHRU_TEST_CACHE   cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/passthru-image)
#   PASSTHRU_TEST_SUITE   Debian suite (default bookworm)
#   PASSTHRU_TEST_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   CONTAINERS_STORAGE_CONF  read by podman itself: a storage.conf to use
#                         instead of the machine's (e.g. driver = "vfs" where
#                         overlay fails). Podman 4.3 ignores STORAGE_DRIVER.
# Needs root (debootstrap, rootful podman).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=${PASSTHRU_TEST_SUITE:-bookworm}
mirror=${PASSTHRU_TEST_MIRROR:-http://deb.debian.org/debian}
cache=${PASSTHRU_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passthru-image}
# On hosts with hybrid cgroups (v1 + a v2 controller) crun refuses to start
# containers: RUN steps fail under the default OCI isolation, and so does
# `podman run`. chroot isolation works; to run commands in an image there,
# use `buildah from` + `buildah run` (which honours this variable too).
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

log() { echo "make-base: $*" >&2; }

mkdir -p "$cache"
# Serialize concurrent callers (parallel tests) on one cache/storage.
exec 9>"$cache/make-base.lock"
flock 9

# The image tag is derived from everything that defines the image, so an
# edit to this script or the Containerfile makes a new image.
hash=$({ cat "$here/make-base.sh" "$here/Containerfile"; echo "$suite $mirror"; } |
    sha256sum | cut -c1-12)
image=localhost/passthru-test-base:$hash

if podman image exists "$image"; then
    log "cached: $image"
    podman tag "$image" localhost/passthru-test-base:latest
    echo "$image"
    exit 0
fi

t0=$SECONDS

# The rootfs is keyed only by what debootstrap gets (and rootfs_rev, to bump
# when the steps making the tarball change), so editing the Containerfile or
# the rest of this script reuses the cached tarball.
debootstrap_args=(--variant=minbase "$suite")
rootfs_rev=2
rkey=$(echo "$rootfs_rev ${debootstrap_args[*]} $mirror" | sha256sum | cut -c1-12)
rootfs=localhost/passthru-test-rootfs:$rkey
tarball=$cache/rootfs-$suite-$rkey.tar

if [[ ! -f $tarball ]]; then
    log "debootstrap ${debootstrap_args[*]} $mirror"
    dir=$(mktemp -d "$cache/debootstrap.XXXXXX")
    trap 'rm -rf "$dir" "$tarball.tmp"' EXIT
    debootstrap "${debootstrap_args[@]}" "$dir" "$mirror" >&2
    # debootstrap leaves its .debs and a 50 MB Packages list behind; they
    # would stay in the base layer for good.
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    # Numeric owners + xattrs (file capabilities) so the image matches the
    # tree; no device nodes, the runtime provides /dev.
    tar --numeric-owner --xattrs --xattrs-include='*' --exclude='./dev/*' \
        -C "$dir" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$dir"
    trap - EXIT
    log "debootstrap done in $((SECONDS - t0))s"
fi

if ! podman image exists "$rootfs"; then
    log "import $tarball as $rootfs"
    podman import - "$rootfs" <"$tarball" >&2
fi

t1=$SECONDS
# --pull=never: the rootfs only exists locally; never ask a registry.
podman build --pull=never --layers --build-arg ROOTFS="$rootfs" \
    -t "$image" -f "$here/Containerfile" "$here" >&2
podman tag "$image" localhost/passthru-test-base:latest
log "build done in $((SECONDS - t1))s, total $((SECONDS - t0))s"
echo "$image"
