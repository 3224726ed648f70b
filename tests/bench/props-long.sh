#!/usr/bin/env bash
# Long run of the config -> plan -> render property tests (tests/render_properties.rs): PROPTEST_CASES cases per
# property (default 20000) on the release build, then the case count and the time. `cargo test` runs 64.
#   bash tests/bench/props-long.sh            # 20000 cases per property
#   PROPTEST_CASES=200000 bash tests/bench/props-long.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

cases=${PROPTEST_CASES:-20000}
[[ $cases =~ ^[0-9]+$ && $cases -gt 0 ]] || {
    echo "PROPTEST_CASES must be a positive number, not '$cases'" >&2
    exit 2
}

cargo test --release --locked --quiet --test render_properties --no-run
start=$(date +%s.%N)
PROPTEST_CASES=$cases cargo test --release --locked --quiet --test render_properties
end=$(date +%s.%N)
printf 'props-long: %s cases per property, %s properties, %.1f s\n' \
    "$cases" "$(grep -A1000 '^proptest!' tests/render_properties.rs | grep -c '^    fn ')" "$(echo "$end - $start" | bc)"
