# Sourced by scripts/install-compose and scripts/current-engine: Debian packages of any suite, fetched
# with a private apt configuration (the host's apt sources and package state are left alone) and
# unpacked with `dpkg -x`, never installed over the machine's own.
#
#   debian_mirror                         the host's own Debian mirror (never one named in the repo)
#   debian_fetch SUITE MIRROR OUT PKG...  downloads PKG... of SUITE and unpacks them all into OUT
#
# Both print nothing on success but their result; on failure they print the tail of apt's log and
# return 1. Needs apt-get, dpkg and the Debian archive keyring.
source "$(dirname "${BASH_SOURCE[0]}")/portable.sh"  # with_timeout

debian_mirror() {
    local f uri
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' "$f"   # deb822
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' "$f"
        done
    } | while read -r uri; do
        case "$uri" in
            *security*|*debian-ports*) continue ;;
            http://*/debian|http://*/debian/|https://*/debian|https://*/debian/) echo "${uri%/}"; break ;;
        esac
    done | head -n 1 | grep . && return 0
    if command -v debootstrap >/dev/null 2>&1; then
        sed -n 's/^DEF_MIRROR="\(.*\)"$/\1/p' "$(command -v debootstrap)" | head -n 1 | grep . && return 0
    fi
    return 1
}

debian_fetch() {
    local suite=$1 mirror=$2 out=$3; shift 3
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg arch work deb rc=0
    [ -r "$keyring" ] || { echo "$keyring missing: apt-get install debian-archive-keyring" >&2; return 1; }
    arch="$(dpkg --print-architecture)"
    work="$(mktemp -d "${TMPDIR:-/tmp}/lab-debian.XXXXXX")"
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/etc/preferences.d" "$work/dl" "$out"
    echo "deb [arch=$arch signed-by=$keyring] $mirror $suite main" > "$work/etc/sources.list"
    : > "$work/status"
    local opts=(
        -o "Dir::Etc::SourceList=$work/etc/sources.list" -o "Dir::Etc::SourceParts=-"
        -o "Dir::Etc::Preferences=$work/etc/preferences" -o "Dir::Etc::PreferencesParts=$work/etc/preferences.d"
        -o "Dir::State::Lists=$work/lists" -o "Dir::State::Status=$work/status" -o "Dir::Cache=$work/cache"
        -o "APT::Architecture=$arch" -o "APT::Architectures=$arch" -o "Acquire::Languages=none"
        -o "Acquire::http::Timeout=30" -o "Acquire::Retries=2" -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root"
    )
    if ! with_timeout 300 apt-get -q "${opts[@]}" update >"$work/apt.log" 2>&1; then
        echo "apt-get update for $suite from $mirror failed" >&2; rc=1
    elif ! (cd "$work/dl" && with_timeout 300 apt-get -q "${opts[@]}" download "$@") >>"$work/apt.log" 2>&1; then
        echo "apt-get download $* ($suite) failed" >&2; rc=1
    else
        for deb in "$work"/dl/*.deb; do dpkg -x "$deb" "$out" || rc=1; done
    fi
    [ "$rc" -eq 0 ] || tail -n 20 "$work/apt.log" >&2
    rm -rf "$work"
    return "$rc"
}
