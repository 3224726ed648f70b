#!/usr/bin/env bash
# Image-mode benchmark on the offline test base: for each scenario, a cold build (no cached layers), a rebuild
# after changing only vfio.ids, their ratio, and the bytes the derived image adds over its base.
#
# Scenarios: "default" (VFIO initramfs + kargs, AMD Navi 21 -> 22 IDs: no vendor-reset), "full" (plus an ACS-override kernel swap from local .debs and a
# vendor-reset stand-in module built from tests/fixtures/kmod-hello). Pass scenario names to run a subset.
# Run as root after tests/setup-debian.sh. Prints one line per scenario, and a table at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(default full)

# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh

bench_base=localhost/passthru-bench-base:$$
fresh_base "$bench_base"

scenario_body() {
    case $1 in
    default) ;;
    full)
        local debs
        debs=$(bash tests/base/fetch-alt-kernel.sh | tail -n 1)
        printf '[acs-override]\nenabled = true\npackages = "%s"\n\n' "$debs"
        printf '[vendor-reset]\nenabled = true\npath = "%s"\n\n' "$PWD/tests/fixtures/kmod-hello"
        ;;
    *)
        echo "unknown scenario $1 (default, full)" >&2
        exit 2
        ;;
    esac
}

image_size() { podman image inspect --format '{{.Size}}' "$1"; }

results=()
for scenario in "${scenarios[@]}"; do
    body=$(scenario_body "$scenario")
    tag=localhost/passthru-bench-$scenario:$$
    made+=("$tag")
    config=$work/$scenario.toml
    write() { printf '[image]\nbase = "%s"\ntag = "%s"\n\n[cpu]\nvendor = "amd"\n\n[gpu]\nvendors = ["amd"]\n\n%s\n\n[vfio]\nids = [%s]\n' \
        "$bench_base" "$tag" "$body" "$1" >"$config"; }

    write '"1002:73bf", "1002:ab28"'
    cold=$(seconds_of "$tool" --config "$config" build --isolation chroot --pull never)
    write '"1002:73df", "1002:ab28"'
    rebuild=$(seconds_of "$tool" --config "$config" build --isolation chroot --pull never)
    added=$(($(image_size "$tag") - $(image_size "$bench_base")))
    ratio=$(awk -v a="$rebuild" -v b="$cold" 'BEGIN { printf "%.3f", a / b }')
    line=$(printf '%-8s cold %6.1f s   id-change rebuild %5.1f s   ratio %5s   added over base %6.1f MB' \
        "$scenario" "$cold" "$rebuild" "$ratio" "$(awk -v b="$added" 'BEGIN { printf "%.1f", b / 1e6 }')")
    echo "$line"
    results+=("$line")
done

echo
echo "== build-bench ($(nproc) cores, $(podman --version))"
printf '%s\n' "${results[@]}"
