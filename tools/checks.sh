#!/usr/bin/env bash
# The collection's quality gates, in order:
#   sanity     ansible-test sanity on a clean copy of the tree (no ignore
#              files), plus compile/import on every real target Python
#   lint       ansible-lint, production profile, offline
#   build      ansible-galaxy collection build; the artifact's contents;
#              install it; ansible-doc of every module
#   changelog  antsibull-changelog lint of the fragments and changelog.yaml
#
# Usage: bash tools/checks.sh [GATE...]    (no GATE: all four; always in this order)
# Exits non-zero when any gate fails; prints one summary line per gate.
# The clean copy, the logs of the last run and the links to real Python
# interpreters live under $STACKMENDER_CACHE/checks; ansible-test keeps its
# virtualenvs in ~/.ansible/test as usual. Nothing is written to the clone.
set -euo pipefail

# shellcheck disable=SC1091  # lib.sh, beside this script
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck disable=SC1091  # collections.sh, beside this script
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/collections.sh"

all_gates=(sanity lint build changelog)
for gate in "$@"; do
    case " ${all_gates[*]} " in
        *" $gate "*) ;;
        *) log "unknown gate '$gate' (gates: ${all_gates[*]})"; exit 2 ;;
    esac
done
# The gates asked for, always in the order above.
gates=()
for gate in "${all_gates[@]}"; do
    case " $* " in
        "  " | *" $gate "*) gates+=("$gate") ;;
    esac
done

checks_dir=$STACKMENDER_CACHE/checks
logs=$checks_dir/logs
mkdir -p "$checks_dir"
# One run at a time: the clean copy and the logs are shared between runs.
exec 9>"$checks_dir/lock"
flock -w 1800 9 || { log "another tools/checks.sh run holds $checks_dir/lock"; exit 1; }
rm -rf "$logs"
mkdir -p "$logs"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/stackmender-checks.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# Microseconds since the epoch, and a duration in seconds with one decimal.
now_us() { printf '%s' "${EPOCHREALTIME/./}"; }
seconds_since() {
    local tenths=$((($(now_us) - $1) / 100000))
    printf '%d.%d s' $((tenths / 10)) $((tenths % 10))
}

run_started=$(now_us)
# STACKMENDER_CHECKS_VENV: another virtualenv whose ansible-core runs the gates (tools/ansible-matrix runs
# sanity under each ansible-core it tests); by default the tools' own.
venv=${STACKMENDER_CHECKS_VENV:-$(tools_venv)}
python=$venv/bin/python
# The collections the roles depend on (galaxy.yml), cached; Galaxy is not reachable.
dependencies=$(dependency_collections)

# --- Python interpreters -------------------------------------------------
# ansible-test looks interpreters up as pythonX.Y on PATH. pyenv shims answer
# there for versions that are not active and then fail, so PATH gets a
# directory of links to interpreters that really run (find_python executes
# each candidate), and shim directories are dropped from PATH. The directory
# is stable so that ansible-test's cached virtualenvs stay valid.
pybin=$checks_dir/python-bin
mkdir -p "$pybin"
read -r -a supported_versions < <("$python" -c '
from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
print(" ".join(SUPPORTED_PYTHON_VERSIONS))')
controller_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
target_versions=()
for version in "${supported_versions[@]}"; do
    if interpreter=$(find_python "$version"); then
        ln -sfn "$interpreter" "$pybin/python$version"
        target_versions+=("$version")
    else
        rm -f "$pybin/python$version"
    fi
done
case " ${target_versions[*]} " in
    *" $controller_version "*) ;;
    *) log "no real python$controller_version interpreter for ansible-test"; exit 1 ;;
esac
clean_path=$pybin:$venv/bin
IFS=: read -r -a path_entries <<<"$PATH"
for entry in "${path_entries[@]}"; do
    case "$entry" in
        */shims | */shims/ | "$venv/bin") ;;
        *) clean_path+=:$entry ;;
    esac
done
export PATH=$clean_path

# --- ansible-test's pip bootstrap ----------------------------------------
# ansible-test bootstraps pip in each virtualenv it creates with a get-pip.py
# downloaded from a host this machine cannot reach, cached as
# ~/.ansible/test/cache/get_pip_<version>.py. Stand in for it with a script
# that uses ensurepip and then installs the pip version ansible-test asks for
# from the package index. A real cached get-pip.py is left alone.
shim_marker='# stackmender: offline stand-in for get-pip.py'
pip_cache=$HOME/.ansible/test/cache
mkdir -p "$pip_cache"
while read -r pip_version; do
    shim=$pip_cache/get_pip_${pip_version//./_}.py
    if [ -f "$shim" ] && ! head -n 1 "$shim" | grep -qxF "$shim_marker"; then
        continue
    fi
    cat >"$shim.new" <<EOF
$shim_marker (written by tools/checks.sh)
import subprocess
import sys

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
options = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install', '--upgrade'] + options))
EOF
    mv "$shim.new" "$shim"
done < <("$python" - "${target_versions[@]}" <<'EOF'
import sys
from ansible_test._internal.host_configs import NativePythonConfig
from ansible_test._internal.python_requirements import get_venv_packages

print('\n'.join(sorted({get_venv_packages(NativePythonConfig(version=v))['pip'] for v in sys.argv[1:]})))
EOF
)

# ansible-test skips its shell script test when the shellcheck program is
# missing; install it where we can so the scripts are really checked.
shellcheck_note=""
if ! command -v shellcheck >/dev/null 2>&1; then
    ensure_debs shellcheck >/dev/null 2>&1 || shellcheck_note="; shellcheck missing, its test skipped"
fi

# --- the clean copy --------------------------------------------------------
# Tracked files plus untracked files git does not ignore, as they are in the
# work tree (uncommitted edits included), copied (never linked) to
# .../ansible_collections/<namespace>/<name>, as ansible-test requires.
# Everything is copied afresh each run; only ansible-test's delegation
# virtualenv under tests/output/.tmp is carried over between runs.
read -r namespace name version < <("$python" -c '
import sys, yaml
with open(sys.argv[1]) as handle:
    meta = yaml.safe_load(handle)
print(meta["namespace"], meta["name"], meta["version"])' "$REPO_ROOT/galaxy.yml")
tree_root=$checks_dir/tree
tree=$tree_root/ansible_collections/$namespace/$name
delegation=tests/output/.tmp/delegation
rm -rf "$checks_dir/delegation"
[ -d "$tree/$delegation" ] && mv "$tree/$delegation" "$checks_dir/delegation"
rm -rf "$tree_root"
mkdir -p "$tree"
(
    cd "$REPO_ROOT"
    git ls-files -z --cached --others --exclude-standard | sort -zu |
        while IFS= read -r -d '' file; do
            if [ -e "$file" ] || [ -L "$file" ]; then printf '%s\0' "$file"; fi
        done |
        tar --null --no-recursion -T - -cf -
) | tar -xf - -C "$tree"
if [ -d "$checks_dir/delegation" ]; then
    mkdir -p "$(dirname "$tree/$delegation")"
    mv "$checks_dir/delegation" "$tree/$delegation"
fi
# Module files, and their names as ansible-doc knows them (sub/dir.py: sub.dir).
module_files=()
modules=()
while IFS= read -r file; do
    module_files+=("plugins/modules/$file")
    file=${file%.py}
    modules+=("${file//\//.}")
done < <(cd "$tree/plugins/modules" 2>/dev/null && find . -name '*.py' ! -name '__init__.py' | sed 's|^\./||' | LC_ALL=C sort)

tool_versions=$("$python" -c '
from importlib.metadata import PackageNotFoundError, version
def known(name):
    try:
        return "%s %s" % (name, version(name))
    except PackageNotFoundError:
        return "%s absent" % name
print(", ".join(known(name) for name in ("ansible-core", "ansible-lint", "antsibull-changelog")))')
log "Python $controller_version (controller); real target Pythons: ${target_versions[*]}; $tool_versions"
log "$namespace.$name $version, ${#modules[@]} module(s); clean copy in $tree (setup $(seconds_since "$run_started"))"

# --- the gates ---------------------------------------------------------------
# Each runs in a subshell with `set -e` in force (the main loop tests its
# status without turning -e off inside it), its output in $logs/<gate>.log.
# A gate may write a one-line note to $logs/<gate>.note for the summary.

gate_sanity() {
    cd "$tree"
    local -a extra_targets=() version
    # STACKMENDER_SANITY_CONTROLLER_ONLY (tools/ansible-matrix): every test on the controller's Python only;
    # the default run already compiles and imports on every other real Python.
    if [ -z "${STACKMENDER_SANITY_CONTROLLER_ONLY:-}" ]; then
        for version in "${target_versions[@]}"; do
            [ "$version" = "$controller_version" ] || extra_targets+=("$version")
        done
    fi
    printf 'ansible-test sanity --venv --python %s%s; compile+import also on %s\n' \
        "$controller_version" "$shellcheck_note" "${extra_targets[*]:-no other Python}" >"$logs/sanity.note"
    if [ ${#extra_targets[@]} -eq 0 ]; then
        ansible-test sanity --venv --python "$controller_version" --color no
        return
    fi
    local status=0
    ansible-test sanity --venv --python "$controller_version" --color no --skip-test compile --skip-test import || status=$?
    # Without --python, compile and import run on every Python ansible-test
    # supports and finds on PATH (only the real ones are there).
    ansible-test sanity --venv --color no --test compile --test import || status=$?
    return "$status"
}

gate_lint() {
    cd "$tree"
    # Offline: ansible-lint installs nothing; our modules resolve from the
    # clean copy, which already has the ansible_collections/<ns>/<name> layout.
    # ansible-lint puts $ANSIBLE_HOME/collections first on the collections
    # path; an empty one keeps an older installed copy from being used.
    # The roles' dependencies resolve from the cached collections.
    ANSIBLE_HOME=$scratch/ansible-home ANSIBLE_COLLECTIONS_PATH=$tree_root:$dependencies \
        ansible-lint --offline --nocolor
}

gate_build() {
    local artifact=$scratch/build/$namespace-$name-$version.tar.gz
    local collections=$scratch/collections module listed expected entry doc_status
    local -a missing=() failures=()
    ansible-galaxy collection build --output-path "$scratch/build" "$tree"
    tar -tzf "$artifact" | sed 's|/$||' | sort >"$logs/artifact-contents.txt"
    echo "artifact contents ($(wc -l <"$logs/artifact-contents.txt") entries):"
    sed 's/^/  /' "$logs/artifact-contents.txt"
    # Development, test and CI files must stay out of the artifact.
    if grep -E \
        -e '^(tests|tools|\.ci|\.github|\.git|\.ansible|collections|build|dist)(/|$)' \
        -e '(^|/)(__pycache__|\.pytest_cache|\.hypothesis|\.mypy_cache|\.tox|\.venv|venv)(/|$)' \
        -e '(^|/)(\.gitignore|\.ansible-lint|\.yamllint|\.pre-commit-config\.yaml|tox\.ini|pytest\.ini|\.plugin-cache\.yaml)$' \
        -e '\.(pyc|pyo|tar\.gz|log|swp)$' \
        "$logs/artifact-contents.txt" >"$scratch/forbidden"; then
        echo "FAILED: the artifact contains development files:"
        sed 's/^/  /' "$scratch/forbidden"
        return 1
    fi
    for entry in MANIFEST.json FILES.json README.md LICENSE meta/runtime.yml "${module_files[@]}"; do
        grep -qxF "$entry" "$logs/artifact-contents.txt" || missing+=("$entry")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "FAILED: the artifact lacks: ${missing[*]}"
        return 1
    fi
    # The dependencies in galaxy.yml are satisfied by the cached collections,
    # already installed on the path, so the offline install resolves them.
    export ANSIBLE_COLLECTIONS_PATH=$collections:$dependencies ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ANSIBLE_NOCOLOR=1
    ansible-galaxy collection install --offline -p "$collections" "$artifact"
    # Away from the clean copy, so only the installed collection is found.
    cd "$scratch"
    listed=$(ansible-doc -t module -l "$namespace.$name" --json | "$python" -c '
import json, sys
print(" ".join(sorted(name.split(".", 2)[2] for name in json.load(sys.stdin))))')
    expected=$(printf '%s\n' "${modules[@]}" | LC_ALL=C sort | paste -sd ' ')
    if [ "$listed" != "$expected" ]; then
        echo "FAILED: ansible-doc lists modules '$listed', plugins/modules has '$expected'"
        return 1
    fi
    for module in "${modules[@]}"; do
        doc_status=0
        ansible-doc -t module "$namespace.$name.$module" >"$scratch/doc.out" 2>"$scratch/doc.err" || doc_status=$?
        cat "$scratch/doc.out" "$scratch/doc.err"
        if [ "$doc_status" -ne 0 ] ||
            ! grep -q "^> MODULE $namespace.$name.$module " "$scratch/doc.out" ||
            ! grep -q '^OPTIONS' "$scratch/doc.out" ||
            grep -qE '\[(WARNING|ERROR)\]' "$scratch/doc.err"; then
            failures+=("$module")
        fi
    done
    if [ ${#failures[@]} -gt 0 ]; then
        echo "FAILED: ansible-doc shows no clean documentation page for: ${failures[*]}"
        return 1
    fi
    printf '%s (%s entries), installed, ansible-doc clean for %s module(s)\n' \
        "$(basename "$artifact")" "$(wc -l <"$logs/artifact-contents.txt")" "${#modules[@]}" >"$logs/build.note"
}

gate_changelog() {
    cd "$tree"
    antsibull-changelog lint
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
    printf '%s fragment(s) and changelogs/changelog.yaml\n' \
        "$(find changelogs/fragments -type f ! -name '.*' | wc -l)" >"$logs/changelog.note"
}

# Lines of a gate's log worth showing when it fails (pip's chatter left out).
show_log() {
    grep -vE '^(Looking in|WARNING: Location|Collecting|Downloading|Processing|Installing collected|Using cached|Requirement already|  (Attempting|Found existing|Uninstalling|Successfully uninstalled))|━|^Successfully installed|^$' "$1" |
        tail -n 300 | sed 's/^/    /' >&2 || true
}

# The rest of a gate's summary line: what ran, and on failure what failed.
gate_note() {
    local gate=$1 result=$2 log=$logs/$1.log note=""
    [ -f "$logs/$gate.note" ] && note=$(cat "$logs/$gate.note")
    if [ "$gate" = lint ]; then
        note=$(grep -E '^(Passed|Failed):' "$log" | tail -n 1 || true)
    elif [ "$gate:$result" = sanity:FAIL ]; then
        note+="; failed: $(awk '/^FATAL: The .* sanity test\(s\) listed below/ { listing = 1; next }
            /^FATAL:/ { listing = 0 } listing' "$log" | sort -u | paste -sd ' ')"
    elif [ "$result" = FAIL ]; then
        note=$(grep -m 1 -E '^(FAILED|ERROR|FATAL)' "$log" || true)
    fi
    if [ "$result" = FAIL ] && [ -z "$note" ]; then
        note="$(grep -cv '^$' "$log") line(s) of findings, see above"
    fi
    printf '%s' "$note"
}

failed=()
summary=()
for gate in "${gates[@]}"; do
    log "$gate: running (log: $logs/$gate.log)"
    started=$(now_us)
    set +e
    (
        set -e
        "gate_$gate"
    ) >"$logs/$gate.log" 2>&1
    status=$?
    set -e
    if [ "$status" -eq 0 ]; then
        result=PASS
    else
        result=FAIL
        failed+=("$gate")
        show_log "$logs/$gate.log"
    fi
    note=$(gate_note "$gate" "$result")
    line=$(printf '%-9s %s %7s  %s' "$gate" "$result" "$(seconds_since "$started")" "$note")
    summary+=("$line")
    log "$line"
done

log "summary (total $(seconds_since "$run_started")):"
for line in "${summary[@]}"; do
    log "  $line"
done
if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: ${failed[*]} (logs in $logs)"
    exit 1
fi
log "all gates passed"
