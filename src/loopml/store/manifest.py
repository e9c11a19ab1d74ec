"""A folder's content address: one line per file, ``relpath<TAB>digest<TAB>size``, sorted by
path, and the BLAKE3 of exactly those bytes. `loopml data add` stores the manifest under that
digest (so the manifest is itself a blob), `run.log_input(folder)` records the same digest,
and model packages name their file tree with it: lineage joins on one definition.

>>> manifest_bytes([("b.csv", "ab", 2), ("a.csv", "cd", 1)])
b'a.csv\\tcd\\t1\\nb.csv\\tab\\t2\\n'
"""

from __future__ import annotations

import blake3

Entry = tuple[str, str, int]  # (relative posix path, file digest, size in bytes)


def manifest_bytes(entries: list[Entry]) -> bytes:
    """The manifest of ``entries``: their lines sorted by path."""
    return "".join([f"{p}\t{d}\t{s}\n" for p, d, s in sorted(entries)]).encode()


def manifest_digest(entries: list[Entry]) -> str:
    """The folder's digest: BLAKE3 of :func:`manifest_bytes`."""
    return blake3.blake3(manifest_bytes(entries)).hexdigest()
