#!/usr/bin/env bash
# The main job on a fresh Debian machine, offline: install what is missing, build the bootc-layout test base
# when it is not cached, then `passthru-image build` the embedded default config pointed at that base, and show
# the image it made. Run as root (rootful podman, debootstrap).
#
# Env: PASSTHRU_MAIN_TAG   tag of the built image (default localhost/passthru-image:main-job)
#      PASSTHRU_CPU        intel | amd, the CPU vendor of the hosts the image is for (default amd); the embedded
#                          default says "auto", which in image mode would read the build machine's CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup-debian.sh
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
tag=${PASSTHRU_MAIN_TAG:-localhost/passthru-image:main-job}
cpu=${PASSTHRU_CPU:-amd}

base=$(bash tests/base/make-base.sh | tail -n 1)
cargo build --release --locked
tool=$PWD/target/release/passthru-image

# Run from an empty directory: with no --config and no ./passthru.toml the tool uses its embedded default; only the
# base, the tag and the CPU vendor are given on the command line.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== passthru-image build (embedded default config, base $base)"
(cd "$work" && time "$tool" build --base "$base" --tag "$tag" --cpu "$cpu" --isolation chroot --pull never)

echo
echo "== the image"
podman image ls "$tag"
podman image inspect --format '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$tag"
root=$(podman image mount "$tag")
trap 'podman image unmount "$tag" >/dev/null; rm -rf "$work"' EXIT
for f in "$root"/usr/lib/bootc/kargs.d/*.toml; do
    echo "== ${f#"$root"}"
    cat "$f"
done
for kdir in "$root"/usr/lib/modules/*/; do
    [[ -f $kdir/vmlinuz ]] || continue
    echo "== VFIO modules in ${kdir#"$root"}initramfs.img"
    listing=$(lsinitrd "$kdir/initramfs.img")
    for module in vfio vfio_iommu_type1 vfio-pci; do
        grep -E "/$module\.ko" <<<"$listing" || { echo "main job: $module is not in the initramfs" >&2; exit 1; }
    done
done
