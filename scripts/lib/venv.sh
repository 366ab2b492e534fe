# Sourced by scripts/test and scripts/lab: `lab_venv NAME FILE...` makes REPO/.venv (Python >= 3.11),
# installs the pinned requirement files into it and then the repo's own packages (pyproject.toml:
# server, clients, lab), editable, so that `python -m lab` and the tests import them from the working
# tree; again only when something changed. Sets LAB_PYTHON.
lab_venv() {
    local name=$1; shift
    local repo; repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "needs Python >= 3.11 as \$PYTHON or python3 (found: $("$python" --version 2>&1 || echo none))" >&2
        return 2
    fi
    # One install at a time: two commands started together must not both write into .venv.
    exec 9>"$repo/.venv.lock"
    flock 9
    if [ ! -x "$repo/.venv/bin/python" ]; then
        "$python" -m venv "$repo/.venv" || {
            rm -rf "$repo/.venv"
            echo "'$python -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
            return 2
        }
    fi
    local wanted; wanted=$(cd "$repo" && cat "$@" requirements/*.txt pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$repo/.venv/.installed-$name" 2>/dev/null)" != "$wanted" ]; then
        local f
        for f in "$@"; do
            "$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$repo/$f" || return 2
        done
        "$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
            --editable "$repo" || return 2
        echo "$wanted" > "$repo/.venv/.installed-$name"
    fi
    flock -u 9
    LAB_PYTHON="$repo/.venv/bin/python"
}
