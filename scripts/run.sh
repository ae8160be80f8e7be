#!/usr/bin/env bash
# Set up everything napari-ctstack needs on this machine, then run one job:
#   bash scripts/run.sh demo [ctstack demo options]   the main job on built-in sample data
#   bash scripts/run.sh test [pytest options]         every check CI runs
# Set-up is idempotent: system packages through apt-get (as root on Debian, only what is
# missing, never upgrading), Python packages into .venv with pip, the Rust extension in release.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
job="${1:-}"
[ $# -gt 0 ] && shift

APT_PACKAGES=(
    xvfb xauth libxcb-icccm4 libxcb-keysyms1 libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri
    libfontconfig1 libdbus-1-3 libglib2.0-0 libx11-xcb1 libxkbcommon-x11-0 libxcb-cursor0
    libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
)

say() { printf '\n== %s\n' "$*"; }

setup_system() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        say "installing system packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade \
            "${missing[@]}" >/dev/null
    else
        echo "note: missing system packages (${missing[*]}); install them with apt-get as root" \
             "for the napari GUI and its tests" >&2
    fi
}

setup_python() {
    local py="${PYTHON:-python3.11}"
    command -v "$py" >/dev/null || py=python3
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv with $($py --version)"
        "$py" -m venv .venv
    fi
    # Reinstall when the project definition or the Rust sources changed since the last set-up.
    local stamp=.venv/.ctstack-setup
    local digest
    digest=$(cat pyproject.toml rust/Cargo.toml rust/src/*.rs | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
        say "installing napari-ctstack and its Python packages (builds the Rust core in release mode)"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e ".[test]"
        echo "$digest" > "$stamp"
    fi
    .venv/bin/python -c "import ctstack, sys; b = ctstack.backend(); print('ctstack', ctstack.__version__, 'backend:', b); sys.exit(b != 'rust')" \
        || { echo "error: the Rust extension did not load; see the build output above" >&2; exit 1; }
}

run_tests() {
    local libdir
    libdir=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
    say "lint: ruff, cargo fmt, cargo clippy"
    .venv/bin/ruff check src tests benchmarks docs notebooks
    .venv/bin/ruff format --check src tests benchmarks docs notebooks
    (cd rust && cargo fmt --check && cargo clippy --release --all-targets -q -- -D warnings)
    say "types: mypy on src/ctstack, stubtest of the Rust extension's stub (_core.pyi)"
    .venv/bin/mypy
    .venv/bin/python -m mypy.stubtest ctstack._core --allowlist tests/stubtest-allowlist.txt
    say "Rust unit tests"
    (cd rust && LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" cargo test --release -q)
    say "engine tests on the numpy fallback (CTSTACK_NO_RUST=1)"
    CTSTACK_NO_RUST=1 .venv/bin/python -m pytest -q -p no:xvfb -o addopts="" --timeout 600 \
        --ignore=tests/napari --ignore=tests/test_notebooks.py --ignore=tests/test_packaging.py
    say "all Python tests, napari GUI tests under Xvfb (the Rust backend is required)"
    unset QT_QPA_PLATFORM
    CTSTACK_REQUIRE_RUST=1 .venv/bin/python -m pytest -q "$@"
}

case "$job" in
    demo) setup_system; setup_python; exec .venv/bin/ctstack demo "$@" ;;
    test) setup_system; setup_python; run_tests "$@" ;;
    setup) setup_system; setup_python ;;
    *) echo "usage: bash scripts/run.sh demo|test|setup [options]" >&2; exit 2 ;;
esac
