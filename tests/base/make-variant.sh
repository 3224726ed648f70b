#!/usr/bin/env bash
# Build a test base made to show one fact of real bases (a third-party kmod package, a version lock, an
# initramfs built with extra parameters, ...) on top of the offline test base (make-base.sh), without a
# registry.
#
#   make-variant.sh NAME
#
# tests/base/variants/NAME/Containerfile starts with `ARG BASE` / `FROM ${BASE}`; the files beside it are its
# build context. Output: progress on stderr; the LAST line on stdout is the image reference
# (localhost/passthru-test-base-NAME:<hash>). The tag is derived from the base image's ID and every file of the
# variant, so an edit makes a new image and an unchanged variant is built once per machine.
# Needs root (rootful podman), like make-base.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
name=${1:?usage: make-variant.sh NAME}
dir=$here/variants/$name
[[ -f $dir/Containerfile ]] || { echo "make-variant: no $dir/Containerfile" >&2; exit 2; }
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
cache=${PASSTHRU_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passthru-image}

base=$(bash "$here/make-base.sh" | tail -n 1)
mkdir -p "$cache"
# One builder per variant at a time (tests run in parallel); different variants build side by side.
exec 9>"$cache/make-variant-$name.lock"
flock 9

base_id=$(podman image inspect --format '{{.Id}}' "$base")
hash=$({ echo "$base_id"; cat "$here/make-variant.sh"; (cd "$dir" && find . -type f | LC_ALL=C sort | xargs sha256sum); } |
    sha256sum | cut -c1-12)
image=localhost/passthru-test-base-$name:$hash

if podman image exists "$image"; then
    echo "make-variant: cached: $image" >&2
else
    t0=$SECONDS
    podman build --pull=never --layers --build-arg BASE="$base" -t "$image" -f "$dir/Containerfile" "$dir" >&2
    echo "make-variant: $image built in $((SECONDS - t0))s" >&2
fi
echo "$image"
