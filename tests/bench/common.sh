# Sourced by the benchmarks in this folder, from the repository's top: the offline test base, a release build
# of the tool, a work directory and the images a run makes, removed on exit, and the two measures they share.
# shellcheck shell=bash

base=$(bash tests/base/make-base.sh | tail -n 1)
cargo build --release --locked --quiet
# shellcheck disable=SC2034 # the scripts that source this file run it
tool=$PWD/target/release/passthru-image
work=$(mktemp -d)
made=()
cleanup() {
    [[ ${#made[@]} -eq 0 ]] || podman rmi --force --ignore "${made[@]}" >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# A cold build must find no layer in the cache, and the cache is keyed by the parent image: a copy of the base with
# its own image ID (one extra label) makes every layer miss, without pruning anyone's cache.
fresh_base() { # IMAGE
    mkdir -p "$work/base"
    printf 'FROM %s\nLABEL passthru.bench.run="%s-%s"\n' "$base" "$1" "$(date +%s%N)" >"$work/base/Containerfile"
    podman build --quiet --pull=never -t "$1" "$work/base" >/dev/null
    made+=("$1")
}

seconds_of() { # command... -> wall seconds with millisecond precision, output to $work/log
    local t0 t1
    t0=$(date +%s%N)
    "$@" >"$work/log" 2>&1 || { tail -n 30 "$work/log" >&2; exit 1; }
    t1=$(date +%s%N)
    awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }'
}
