#!/usr/bin/env bash
# Download a second kernel (image + headers .debs) for tests that swap the
# kernel of the test base image. Prints the directory holding the .debs as
# the LAST line on stdout; progress goes to stderr.
#
# Usage: fetch-alt-kernel.sh [BASE_KVER]
#   BASE_KVER  kernel of the base image, e.g. 6.1.0-50-amd64 (default: the
#              one linux-image-amd64 currently pulls from $suite main).
#
# We take the *cloud* flavour of the base's ABI (6.1.0-50-amd64 ->
# 6.1.0-50-cloud-amd64): a different kernel release string with vfio,
# vfio_iommu_type1, vfio_pci and virtio_blk as modules, which the archive
# keeps as long as the base's kernel, and whose dependencies
# (linux-headers-<abi>-common, linux-kbuild, linux-base, dracut as the
# initramfs tool) are already in the base image, so `dpkg -i` works offline.
#
# Env: PASSTHRU_TEST_CACHE, PASSTHRU_TEST_SUITE, PASSTHRU_TEST_MIRROR as in
# make-base.sh.
set -euo pipefail

suite=${PASSTHRU_TEST_SUITE:-bookworm}
mirror=${PASSTHRU_TEST_MIRROR:-http://deb.debian.org/debian}
cache=${PASSTHRU_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passthru-image}

log() { echo "fetch-alt-kernel: $*" >&2; }

# Tests run in parallel and may all want the kernel at once: one fetch at a time (apt locks its lists,
# and a second download would race the first into the same directory); the others then find it done.
mkdir -p "$cache"
exec 9>"$cache/fetch-alt-kernel.lock"
flock 9

# A private apt state with only "$suite main", like the base image's
# sources.list: the host's own sources (security, backports) would resolve
# other versions than the ones the base image got.
aptdir=$cache/apt-$suite
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
echo "deb $mirror $suite main" >"$aptdir/sources.list"
aptopts=(-q -o Dir::Etc::SourceList="$aptdir/sources.list"
    -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$aptdir/lists"
    -o Dir::Cache="$aptdir/cache" -o APT::Sandbox::User=root)
updated=
apt_update() { [[ -n $updated ]] || apt-get "${aptopts[@]}" update >&2; updated=1; }

base_kver=${1:-}
if [[ -z $base_kver ]]; then
    apt_update
    # linux-image-amd64 depends on exactly linux-image-<abi>-amd64.
    base_kver=$(apt-cache "${aptopts[@]}" depends linux-image-amd64 |
        sed -n 's/^ *Depends: linux-image-\(.*\)$/\1/p' | head -n1)
fi
[[ $base_kver == *-amd64 && $base_kver != *-cloud-amd64 ]] ||
    { log "unexpected base kernel '$base_kver'"; exit 1; }
alt_kver=${base_kver%-amd64}-cloud-amd64
pkgs=("linux-image-$alt_kver" "linux-headers-$alt_kver")

out=$cache/alt-kernel/$alt_kver
# Idempotent and offline once fetched: the stamp is written last.
if [[ ! -f $out/.complete ]]; then
    apt_update
    mkdir -p "$out"
    log "downloading ${pkgs[*]} into $out"
    (cd "$out" && apt-get "${aptopts[@]}" download "${pkgs[@]}" >&2)
    # The swap test needs these modules from the .deb, not built in.
    listing=$(dpkg-deb -c "$out"/linux-image-"$alt_kver"_*.deb)
    for ko in vfio vfio_iommu_type1 vfio-pci virtio_blk; do
        grep -q "/$ko\.ko" <<<"$listing" || { log "$ko.ko missing"; exit 1; }
    done
    touch "$out/.complete"
fi
log "kernel $alt_kver: $(cd "$out" && echo *.deb)"
echo "$out"
