# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The qcow2 image header, read in pure Python: the version, the virtual size and the backing file.

Only the fixed header and its extensions are read (the first cluster at most);
no image data, so a check of thousands of instance disks stays cheap. Layout,
big-endian, from the qcow2 specification in QEMU's docs/interop/qcow2.txt:

    0  magic 'QFI\\xfb'         4  version (2 or 3)
    8  backing_file_offset     16  backing_file_size (at most 1023)
   20  cluster_bits            24  size (virtual, bytes)
   ...
   version 3 adds, from 72: incompatible/compatible/autoclear features,
   96 refcount_order, 100 header_length.

Header extensions follow the header (at 72 for version 2, at header_length
for version 3), each a 4-byte type, a 4-byte length and the data padded to 8
bytes; type 0xe2792aca names the backing file's format, type 0 ends them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct

MAGIC = b'QFI\xfb'
_HEADER_V2 = struct.Struct('>4sIQIIQ')         # magic, version, backing offset, backing size, cluster bits, size
_HEADER_LENGTH = struct.Struct('>I')             # version 3: header_length, at offset 100
_EXTENSION = struct.Struct('>II')
EXTENSION_END = 0x00000000
EXTENSION_BACKING_FORMAT = 0xe2792aca
MAX_BACKING_NAME = 1023
MIN_CLUSTER_BITS, MAX_CLUSTER_BITS = 9, 21
# Enough for the header, its extensions and the backing file name in every image qemu-img writes.
READ_SIZE = 64 * 1024


class Qcow2Error(ValueError):
    """The file starts like a qcow2 image but its header is not one."""


def is_qcow2(data):
    return data[:4] == MAGIC


def parse_header(data):
    """The header fields of an image whose first bytes are ``data``; None when it is not qcow2.

    Returns a dict: ``version``, ``size``, ``cluster_size``, ``backing_file`` (the
    name exactly as stored, or None) and ``backing_format`` (or None).
    """
    if not is_qcow2(data):
        return None
    if len(data) < _HEADER_V2.size:
        raise Qcow2Error('the qcow2 header is truncated (%d bytes)' % len(data))
    _magic, version, backing_offset, backing_size, cluster_bits, size = _HEADER_V2.unpack_from(data, 0)
    if version not in (2, 3):
        raise Qcow2Error('qcow2 version %d is not one this reader knows (2 or 3)' % version)
    if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
        raise Qcow2Error('qcow2 cluster_bits %d is out of range' % cluster_bits)
    cluster_size = 1 << cluster_bits
    header_length = 72
    if version == 3:
        if len(data) < 104:
            raise Qcow2Error('the qcow2 version 3 header is truncated (%d bytes)' % len(data))
        header_length = _HEADER_LENGTH.unpack_from(data, 100)[0]
        if header_length < 104 or header_length > cluster_size:
            raise Qcow2Error('qcow2 header_length %d is out of range' % header_length)
    backing_file = None
    if backing_offset:
        if backing_size > MAX_BACKING_NAME:
            raise Qcow2Error('qcow2 backing file name length %d exceeds %d' % (backing_size, MAX_BACKING_NAME))
        if backing_offset + backing_size > min(len(data), cluster_size):
            raise Qcow2Error('the qcow2 backing file name (offset %d, %d bytes) lies outside the first cluster'
                             % (backing_offset, backing_size))
        raw = data[backing_offset:backing_offset + backing_size]
        backing_file = raw.decode('utf-8', 'surrogateescape')
    return dict(version=version, size=size, cluster_size=cluster_size, backing_file=backing_file,
                backing_format=_backing_format(data, header_length, backing_offset or len(data)))


def _backing_format(data, offset, limit):
    """The backing format header extension, if any, between ``offset`` and ``limit``."""
    while offset + _EXTENSION.size <= min(limit, len(data)):
        kind, length = _EXTENSION.unpack_from(data, offset)
        if kind == EXTENSION_END:
            return None
        start = offset + _EXTENSION.size
        if start + length > len(data):
            raise Qcow2Error('a qcow2 header extension runs past the data read')
        if kind == EXTENSION_BACKING_FORMAT:
            return data[start:start + length].decode('ascii', 'replace')
        offset = start + (length + 7) // 8 * 8
    return None


def read_header(path):
    """:func:`parse_header` of the file at ``path``; None when it is not a qcow2 image."""
    with open(path, 'rb') as handle:
        data = handle.read(READ_SIZE)
    try:
        return parse_header(data)
    except Qcow2Error as error:
        raise Qcow2Error('%s: %s' % (path, error))


def backing_path(image_path, backing_file):
    """Where a backing file name points: QEMU reads a relative name from the image's own directory.

    Returns None for names that are not local files (``json:{...}``, ``nbd:``, ``rbd:`` and
    other protocol prefixes), which this reader cannot check.
    """
    if not backing_file:
        return None
    if backing_file.startswith('json:'):
        return None
    head = backing_file.split('/', 1)[0]
    if ':' in head and not head.startswith('file:'):
        return None
    if head.startswith('file:'):
        backing_file = backing_file[len('file:'):]
    if os.path.isabs(backing_file):
        return os.path.normpath(backing_file)
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(image_path)), backing_file))
