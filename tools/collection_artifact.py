"""A collection artifact (the tarball ansible-galaxy installs) made from an installed collection.

The community ``ansible`` package on PyPI leaves out some files its collections' FILES.json lists
(``.azure-pipelines``); ansible-galaxy refuses such an artifact. This one lists what it holds, with
each file's checksum, and MANIFEST.json carries the checksum of that list, as ansible-galaxy checks.

    python tools/collection_artifact.py INSTALLED_DIR OUTPUT_DIR    (prints the artifact's path)
"""

import hashlib
import io
import json
import os
import sys
import tarfile


def _add_bytes(archive, name, data):
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mode = 0o644
    archive.addfile(member, io.BytesIO(data))


def build(source, output):
    with open(os.path.join(source, 'MANIFEST.json')) as handle:
        manifest = json.load(handle)
    with open(os.path.join(source, 'FILES.json')) as handle:
        files = json.load(handle)
    present = []
    for entry in files['files']:
        path = os.path.join(source, entry['name'])
        if entry['name'] == '.' or (entry['ftype'] == 'dir' and os.path.isdir(path)):
            present.append(entry)
        elif entry['ftype'] == 'file' and os.path.isfile(path):
            with open(path, 'rb') as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            present.append(dict(entry, chksum_sha256=digest, chksum_type='sha256'))
    files['files'] = present
    listing = json.dumps(files, indent=4).encode()
    manifest['file_manifest_file']['chksum_sha256'] = hashlib.sha256(listing).hexdigest()
    info = manifest['collection_info']
    name = os.path.join(output, '%s-%s-%s.tar.gz' % (info['namespace'], info['name'], info['version']))
    with tarfile.open(name, 'w:gz') as archive:
        _add_bytes(archive, 'MANIFEST.json', json.dumps(manifest, indent=4).encode())
        _add_bytes(archive, 'FILES.json', listing)
        for entry in present:
            if entry['name'] != '.':
                archive.add(os.path.join(source, entry['name']), arcname=entry['name'], recursive=False)
    return name


if __name__ == '__main__':
    print(build(*sys.argv[1:3]))
