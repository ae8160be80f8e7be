#!/usr/bin/env bash
# Set up everything napari-ctstack needs on this machine, then run one job:
#   bash scripts/run.sh demo [ctstack demo options]   the main job on built-in sample data
#   bash scripts/run.sh test [pytest options]         every check CI runs
#   bash scripts/run.sh release                       only the release check (part of test)
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
    chromium  # the Jupyter viewer's browser tests (tests/browser): Playwright drives this one
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
             "for the napari GUI and its tests, and for the Jupyter viewer's browser tests" >&2
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

# Release check, run once: build the wheel and the sdist as a user's pip would (isolated build
# envs; the wheel reuses rust/target, so the Rust core is relinked, not rebuilt), check that they
# carry every file the package needs, then install the wheel alone (core, no napari) into a fresh
# venv and run `ctstack info` on a phantom written there.
check_release() {
    say "release: wheel and sdist, their contents, the wheel in a fresh venv (core only)"
    local t0=$SECONDS work py="${PYTHON:-python3.11}"
    command -v "$py" >/dev/null || py=python3
    work=$(mktemp -d "${TMPDIR:-/tmp}/ctstack-release.XXXXXX")
    # shellcheck disable=SC2064  # expand $work now; the trap clears itself after this function
    trap "rm -rf '$work'; trap - RETURN" RETURN
    .venv/bin/python -c "import build" 2>/dev/null || .venv/bin/python -m pip install -q "build>=1.2"
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/rust/target}" \
        .venv/bin/python -m build --wheel --outdir "$work/dist" . >"$work/wheel.log" 2>&1 \
        || { tail -40 "$work/wheel.log" >&2; echo "error: the wheel did not build" >&2; return 1; }
    .venv/bin/python -m build --sdist --outdir "$work/dist" . >"$work/sdist.log" 2>&1 \
        || { tail -40 "$work/sdist.log" >&2; echo "error: the sdist did not build" >&2; return 1; }
    .venv/bin/python - "$work/dist" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path

dist, pkg = Path(sys.argv[1]), Path("src/ctstack")
(wheel,) = dist.glob("napari_ctstack-*.whl")
(sdist,) = dist.glob("napari_ctstack-*.tar.gz")
names = set(zipfile.ZipFile(wheel).namelist())
compiled = (".so", ".pyd", ".pyc")  # built here, not sources: the _core*.so is checked below
ours = [p for p in pkg.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in compiled]
problems = [f"wheel lacks {p.relative_to('src')}" for p in ours
            if str(p.relative_to("src")) not in names]
if not any(n.startswith("ctstack/_core.") and n.endswith(".so") for n in names):
    problems.append("wheel lacks the compiled ctstack/_core*.so")
with zipfile.ZipFile(wheel) as zf:
    if zf.read("ctstack/napari.yaml") != (pkg / "napari.yaml").read_bytes():
        problems.append("wheel's ctstack/napari.yaml differs from src/ctstack/napari.yaml")
with tarfile.open(sdist) as tf:
    top = tf.getnames()[0].split("/")[0]
    members = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
needed = ["pyproject.toml", "README.md", "rust/Cargo.toml", "rust/Cargo.lock"]
needed += [str(p) for p in Path("rust/src").rglob("*.rs")]
needed += [str(p) for p in ours]
problems += [f"sdist lacks {n}" for n in needed if n not in members]
problems += [f"sdist carries a compiled file {n}" for n in members if n.endswith((".so", ".pyd"))]
for p in problems:
    print(f"error: {p}", file=sys.stderr)
print(f"{wheel.name}: {len(names)} files; {sdist.name}: {len(members)} files; "
      f"{len(ours)} package files checked")
sys.exit(1 if problems else 0)
PY
    "$py" -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install -q "$work"/dist/napari_ctstack-*.whl
    if "$work/venv/bin/python" -c "import napari" 2>/dev/null; then
        echo "error: the core wheel pulled in napari" >&2; return 1
    fi
    (cd "$work" && venv/bin/python -c "from ctstack.sample import write_phantom_stack as w; w('phantom', (16, 64, 64))" \
        && venv/bin/ctstack info phantom >info.txt && venv/bin/ctstack info phantom --json >info.json \
        && venv/bin/python -c "import ctstack, json, sys; i = json.load(open('info.json')); sys.exit(ctstack.backend() != 'rust' or i['shape'] != [16, 64, 64])") \
        || { cat "$work/info.txt" >&2 2>/dev/null; echo "error: ctstack info failed in the fresh venv" >&2; return 1; }
    sed 's/^/  /' "$work/info.txt"
    echo "release check: $((SECONDS - t0)) s"
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
    check_release
    say "engine tests on the numpy fallback (CTSTACK_NO_RUST=1; soak, packaging, browser and cluster run once, below)"
    CTSTACK_NO_RUST=1 .venv/bin/python -m pytest -q -p no:xvfb -o addopts="" --timeout 600 \
        --ignore=tests/napari --ignore=tests/test_notebooks.py --ignore=tests/test_packaging.py \
        --ignore=tests/test_soak.py --ignore=tests/browser --ignore=tests/cluster
    say "all Python tests, napari GUI tests under Xvfb (the Rust backend is required)"
    unset QT_QPA_PLATFORM
    CTSTACK_REQUIRE_RUST=1 .venv/bin/python -m pytest -q "$@"
}

case "$job" in
    demo) setup_system; setup_python; exec .venv/bin/ctstack demo "$@" ;;
    test) setup_system; setup_python; run_tests "$@" ;;
    release) setup_python; check_release ;;
    setup) setup_system; setup_python ;;
    *) echo "usage: bash scripts/run.sh demo|test|setup|release [options]" >&2; exit 2 ;;
esac
