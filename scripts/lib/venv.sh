# Sourced by scripts/test and scripts/lab: `lab_venv NAME FILE...` makes REPO/.venv (Python >= 3.11),
# installs the pinned requirement files into it and then the repo's own packages (pyproject.toml:
# server, clients, lab), editable, so that `python -m lab` and the tests import them from the working
# tree; again only when something changed. Sets LAB_PYTHON. Needs bash and python3 only (scripts/lib/portable.sh).
source "$(dirname "${BASH_SOURCE[0]}")/portable.sh"

lab_venv() {
    local name=$1; shift
    local repo; repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "needs Python >= 3.11 as \$PYTHON or python3 (found: $("$python" --version 2>&1 || echo none))" >&2
        return 2
    fi
    # One install at a time: two commands started together must not both write into .venv.
    lab_lock "$repo/.venv.lock" || return 2
    local code=0
    _lab_venv_install "$repo" "$python" "$name" "$@" || code=$?
    lab_unlock "$repo/.venv.lock"
    [ "$code" -eq 0 ] || return "$code"
    LAB_PYTHON="$repo/.venv/bin/python"
}

# _lab_venv_install REPO PYTHON NAME FILE...: lab_venv's work, under its lock.
_lab_venv_install() {
    local repo=$1 python=$2 name=$3; shift 3
    if [ ! -x "$repo/.venv/bin/python" ]; then
        "$python" -m venv "$repo/.venv" || {
            rm -rf "$repo/.venv"
            echo "'$python -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
            return 2
        }
    fi
    local wanted; wanted=$(cd "$repo" && cat "$@" requirements/*.txt pyproject.toml | lab_sha256)
    if [ "$(cat "$repo/.venv/.installed-$name" 2>/dev/null)" != "$wanted" ]; then
        local f
        for f in "$@"; do
            "$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$repo/$f" || return 2
        done
        "$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
            --editable "$repo" || return 2
        echo "$wanted" > "$repo/.venv/.installed-$name"
    fi
}
