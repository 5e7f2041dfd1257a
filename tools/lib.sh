# shellcheck shell=bash
# Shared shell functions for the project's own commands (tools/test, tools/demo).
# Everything slow is cached outside the clone, under $STACKMENDER_CACHE.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACKMENDER_CACHE=${STACKMENDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stackmender}
export STACKMENDER_CACHE
mkdir -p "$STACKMENDER_CACHE"

log() { printf '[stackmender] %s\n' "$*" >&2; }

# A python interpreter of exactly version $1 (e.g. 3.12) that really runs,
# or nothing. pyenv shims answer for versions that are not active, so each
# candidate is executed before it is trusted.
find_python() {
    local want=$1 candidate
    local -a candidates=("python$want")
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv root)"/versions/"$want"*/bin/"python$want")
    fi
    candidates+=(/usr/bin/"python$want" /usr/local/bin/"python$want")
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c "import sys, venv; assert sys.version_info[:2] == tuple(map(int, '$want'.split('.')))" >/dev/null 2>&1; then
            "$candidate" -c 'import sys; print(sys.executable)'
            return 0
        fi
    done
    return 1
}

apt_updated=""
# Install Debian packages that are missing (root only; otherwise explain).
ensure_debs() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "missing Debian packages: ${missing[*]} (run as root, or install them first)"
        return 1
    fi
    if [ -z "$apt_updated" ]; then
        apt-get update -qq >&2
        apt_updated=1
    fi
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Hash of files and strings, to key caches.
content_key() {
    { for arg in "$@"; do if [ -f "$arg" ]; then cat "$arg"; else printf '%s\n' "$arg"; fi; done; } | sha256sum | cut -c1-12
}

# make_venv DIR PYTHON PIP_ARGS... : build a venv once; a finished venv has
# a .complete marker so an interrupted build is redone, never half-used.
# A lock file beside it keeps concurrent callers from building it twice.
make_venv() {
    local dir=$1 python=$2
    shift 2
    [ -f "$dir/.complete" ] && return 0
    (
        flock 9
        [ -f "$dir/.complete" ] && exit 0
        rm -rf "$dir"
        log "building virtualenv $(basename "$dir")"
        "$python" -m venv "$dir"
        "$dir/bin/pip" install -q --disable-pip-version-check -U pip wheel >&2
        "$dir/bin/pip" install -q --disable-pip-version-check "$@" >&2
        touch "$dir/.complete"
    ) 9>"$dir.lock"
}

# The real OpenStack services of one release, in a venv of their own
# (never in the collection's test environment).
openstack_venv() {
    local release=$1 line nova cinder placement keystone constraints python key dir
    line=$(awk -v r="$release" '$1 == r' "$REPO_ROOT/tests/releases/releases.tsv")
    if [ -z "$line" ]; then
        log "unknown release $release (see tests/releases/releases.tsv)"
        return 1
    fi
    read -r _ nova cinder placement keystone constraints <<<"$line"
    python=$(find_python 3.11) || python=$(find_python 3.12) || { log "OpenStack needs Python 3.11 or 3.12"; return 1; }
    # setuptools 81 dropped pkg_resources, which the older releases import at run time.
    local extra="setuptools<81"
    key=$(content_key "$line" "$REPO_ROOT/tests/releases/$constraints" "$("$python" -V 2>&1)" "$extra")
    dir="$STACKMENDER_CACHE/venv-openstack-$release-$key"
    make_venv "$dir" "$python" -c "$REPO_ROOT/tests/releases/$constraints" \
        "nova==$nova" "cinder==$cinder" "openstack-placement==$placement" "keystone==$keystone" PyMySQL "$extra"
    echo "$dir"
}

# The controller: Python 3.12 when the machine has it (ansible-core 2.21),
# else 3.11 (ansible-core 2.19, the newest that runs there).
controller_python() {
    find_python 3.12 || find_python 3.11 || { log "need Python 3.11 or 3.12"; return 1; }
}

# The collection's test environment; prints its directory.
tools_venv() {
    local python key dir
    python=$(controller_python)
    key=$(content_key "$REPO_ROOT/tools/requirements-dev.txt" "$("$python" -V 2>&1)")
    dir="$STACKMENDER_CACHE/venv-tools-$key"
    make_venv "$dir" "$python" -r "$REPO_ROOT/tools/requirements-dev.txt"
    echo "$dir"
}
