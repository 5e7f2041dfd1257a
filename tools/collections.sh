#!/usr/bin/env bash
# shellcheck shell=bash
# The collections the roles use, community.general (open_iscsi, modprobe)
# and openstack.cloud (server_action, server_volume), taken from the
# community `ansible` package on PyPI: Galaxy is not reachable from the
# machines this project builds on, PyPI is. Only the collection files are
# used; the package is installed without its dependencies (ansible-core comes
# from tools/requirements-dev.txt) and is never imported.
#
# Sourced:   source tools/collections.sh; path=$(dependency_collections)
# Run:       bash tools/collections.sh     (prints the path)
# The path holds ansible_collections/<namespace>/<name> links into the cached
# package; put it on ANSIBLE_COLLECTIONS_PATH after the collection itself.
set -euo pipefail

# shellcheck disable=SC1091  # lib.sh, beside this script
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# ansible 14.5.0 bundles community.general 13.5.0 and openstack.cloud 2.6.0.
ANSIBLE_COMMUNITY_PACKAGE=ansible==14.5.0
# community.general itself depends on community.library_inventory_filtering_v1.
DEPENDENCY_COLLECTIONS=(community.general community.library_inventory_filtering_v1 openstack.cloud)

dependency_collections() {
    local python venv tree site collection
    python=$(controller_python)
    venv=$STACKMENDER_CACHE/venv-collections-$(content_key "$ANSIBLE_COMMUNITY_PACKAGE")
    tree=$STACKMENDER_CACHE/collections-$(content_key "$ANSIBLE_COMMUNITY_PACKAGE" "${DEPENDENCY_COLLECTIONS[*]}")
    if [ ! -f "$tree/.complete" ]; then
        # The package declares Python >= 3.12 for its ansible-core; its
        # collection files serve a 3.11 controller (ansible-core 2.19) as well.
        make_venv "$venv" "$python" --no-deps --ignore-requires-python "$ANSIBLE_COMMUNITY_PACKAGE"
        (
            flock 9
            [ -f "$tree/.complete" ] && exit 0
            rm -rf "$tree"
            site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
            for collection in "${DEPENDENCY_COLLECTIONS[@]}"; do
                if [ ! -f "$site/ansible_collections/${collection/.//}/MANIFEST.json" ]; then
                    log "$ANSIBLE_COMMUNITY_PACKAGE has no collection $collection"
                    exit 1
                fi
                mkdir -p "$tree/ansible_collections/${collection%%.*}"
                ln -s "$site/ansible_collections/${collection/.//}" "$tree/ansible_collections/${collection/.//}"
            done
            touch "$tree/.complete"
        ) 9>"$tree.lock"
    fi
    echo "$tree"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    dependency_collections
fi
