#!/usr/bin/env bash
# Fleet benchmark on the offline test base: N host configs (default 10) that differ only in their device IDs,
# built by one `passthru-image build --hosts` from a cold cache, against one cold build of a single host. The
# fleet shares one stack (initramfs and all below it), so it should take at most 1.5 x the single build; each
# further host adds only its host layers. Prints the times, their ratio, and the bytes each extra host adds to
# the storage (the layers, config and manifest it does not share with the first host).
#
#   tests/bench/fleet-bench.sh [N]
#
# Run as root after tests/setup-debian.sh (podman, jq, skopeo). Outside the test suite: it takes minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

count=${1:-10}
[[ $count =~ ^[0-9]+$ && $count -ge 2 && $count -le 99 ]] || { echo "usage: $0 [N, 2..99]" >&2; exit 2; }

# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh

# Host i passes an NVIDIA GPU and its audio function: 10de:2684 + 10de:22ba for host 1, then other IDs.
write_host() { # FILE BASE TAG I
    printf '[image]\nbase = "%s"\ntag = "%s"\n\n[cpu]\nvendor = "amd"\n\n[gpu]\nvendors = ["nvidia"]\n\n[vfio]\nids = ["10de:%04x", "10de:22ba"]\n' \
        "$2" "$3" $((0x2684 + $4 - 1)) >"$1"
}

# Layers (digest size), config size and manifest size of an image as its storage manifest lists them.
manifest_of() { skopeo inspect --raw "containers-storage:$1" 2>/dev/null; }

# Bytes an image adds to storage beside `first`: its layers the first does not have, its config and manifest.
added_bytes() { # IMAGE FIRST
    local own first
    own=$(manifest_of "$1")
    first=$(manifest_of "$2")
    jq -n --argjson own "$own" --argjson first "$first" --arg manifest "$(printf '%s' "$own" | wc -c)" '
        ([$first.layers[].digest]) as $shared
        | ([$own.layers[] | select(.digest as $d | $shared | index($d) | not) | .size] | add // 0)
          + $own.config.size + ($manifest | tonumber)'
}

echo "== one host, cold"
single_base=localhost/passthru-bench-fleet-base:single-$$
fresh_base "$single_base"
single_tag=localhost/passthru-bench-fleet-single:$$
made+=("$single_tag")
write_host "$work/single.toml" "$single_base" "$single_tag" 1
single=$(seconds_of "$tool" --config "$work/single.toml" build --isolation chroot --pull never)
echo "   $single s"

echo "== $count hosts, cold, one build --hosts"
fleet_base=localhost/passthru-bench-fleet-base:fleet-$$
fresh_base "$fleet_base"
repository=localhost/passthru-bench-fleet-$$
mkdir -p "$work/hosts"
for i in $(seq 1 "$count"); do
    name=$(printf 'h%02d' "$i")
    write_host "$work/hosts/$name.toml" "$fleet_base" "$repository:latest" "$i"
    made+=("$repository:$name")
done
fleet=$(seconds_of "$tool" build --hosts "$work/hosts" --isolation chroot --pull never)
echo "   $fleet s"
stacks=$(grep -c '^Built .* on 1 stack:' "$work/log" || true)
[[ $stacks -eq 1 ]] || { echo "the hosts did not share one stack:" >&2; tail -n 20 "$work/log" >&2; exit 1; }

first=$repository:h01
extra=()
for i in $(seq 2 "$count"); do
    extra+=("$(added_bytes "$(printf '%s:h%02d' "$repository" "$i")" "$first")")
done
read -r min avg max < <(printf '%s\n' "${extra[@]}" | awk 'NR == 1 { min = max = $1 }
    { sum += $1; if ($1 < min) min = $1; if ($1 > max) max = $1 }
    END { printf "%d %d %d\n", min, sum / NR, max }')
full=$(podman image inspect --format '{{.Size}}' "$first")
ratio=$(awk -v a="$fleet" -v b="$single" 'BEGIN { printf "%.2f", a / b }')
per_host=$(awk -v a="$fleet" -v b="$single" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / (n - 1) }')

echo
echo "== fleet-bench ($(nproc) cores, $(podman --version))"
printf 'one host, cold build            %7.1f s\n' "$single"
printf '%2d hosts, one build --hosts     %7.1f s   ratio %s (at most 1.5)\n' "$count" "$fleet" "$ratio"
printf 'each further host               %7.1f s   (fleet - single) / %d\n' "$per_host" $((count - 1))
printf 'bytes each further host adds    %7d B   (min %d, max %d; one whole image is %d B)\n' "$avg" "$min" "$max" "$full"
awk -v r="$ratio" 'BEGIN { exit !(r <= 1.5) }' || { echo "ratio $ratio is above 1.5" >&2; exit 1; }
