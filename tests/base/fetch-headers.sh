#!/usr/bin/env bash
# Download the kernel headers of the test base's kernel as .debs: what a user gives `vendor-reset.headers` when
# the base's repositories no longer carry them (tests/base/variants/no-headers). Prints the directory holding
# the .debs as the LAST line on stdout; progress goes to stderr.
#
# Usage: fetch-headers.sh KVER    (the test base's kernel, e.g. 6.1.0-50-amd64)
#
# linux-headers-KVER and the packages of its dependencies that the no-headers base purged with it
# (linux-headers-ABI-common, linux-kbuild-X.Y), so `apt-get install` of the directory works offline.
#
# Env: PASSTHRU_TEST_CACHE, PASSTHRU_TEST_SUITE, PASSTHRU_TEST_MIRROR as in make-base.sh.
set -euo pipefail

kver=${1:?usage: fetch-headers.sh KVER}
suite=${PASSTHRU_TEST_SUITE:-bookworm}
mirror=${PASSTHRU_TEST_MIRROR:-http://deb.debian.org/debian}
cache=${PASSTHRU_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passthru-image}

log() { echo "fetch-headers: $*" >&2; }
[[ $kver =~ ^[A-Za-z0-9.+~_-]+$ ]] || { log "unexpected kernel version '$kver'"; exit 1; }

# Parallel tests may want them at once: one fetch at a time, the others find it done.
mkdir -p "$cache"
exec 9>"$cache/fetch-headers.lock"
flock 9

out=$cache/headers/$kver
# Idempotent and offline once fetched: the stamp is written last.
if [[ ! -f $out/.complete ]]; then
    # A private apt state with only "$suite main", like the base's own sources (the host's would resolve other
    # versions); its own directory, so it never races fetch-alt-kernel.sh's.
    aptdir=$cache/apt-headers-$suite
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    echo "deb $mirror $suite main" >"$aptdir/sources.list"
    aptopts=(-q -o Dir::Etc::SourceList="$aptdir/sources.list"
        -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$aptdir/lists"
        -o Dir::Cache="$aptdir/cache" -o APT::Sandbox::User=root)
    apt-get "${aptopts[@]}" update >&2
    rm -rf "$out"
    mkdir -p "$out"
    (cd "$out" && apt-get "${aptopts[@]}" download "linux-headers-$kver" >&2)
    # Its dependencies of the same kernel build: the common headers and the kbuild tools.
    depends=$(dpkg-deb -f "$out"/linux-headers-"$kver"_*.deb Depends | tr ',' '\n' |
        sed -n 's/^ *\(linux-headers-[^ ]*-common\|linux-kbuild-[^ ]*\)\( .*\)\{0,1\}$/\1/p')
    [[ -n $depends ]] || { log "linux-headers-$kver names no -common or kbuild package"; exit 1; }
    # shellcheck disable=SC2086 # one word per package name
    (cd "$out" && apt-get "${aptopts[@]}" download $depends >&2)
    touch "$out/.complete"
fi
log "headers for $kver: $(cd "$out" && echo *.deb)"
echo "$out"
