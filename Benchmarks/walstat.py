#!/usr/bin/env python3
"""Which B-trees the WAL's pages belong to: where an ingest commit's writes go.

    python3 Benchmarks/walstat.py DIR [COMMITS]

DIR holds a *copy* of a running daemon's switchboard.sqlite, -wal and -shm (copy all three
while it is under load; a clean stop checkpoints the WAL away). The script reads the WAL's
frames up to the first one whose salt does not match the header (the frames of the current
log), groups them by commit, maps each page number to its table or index with SQLite's
`dbstat` view, and prints each B-tree's share of the pages written by the last COMMITS (200)
commits. A page written by several commits counts once per commit: that is what each commit
writes.
"""
import collections
import sqlite3
import struct
import sys

if len(sys.argv) < 2:
    sys.exit(__doc__)
directory = sys.argv[1]
last = int(sys.argv[2]) if len(sys.argv) > 2 else 200
db = directory + "/switchboard.sqlite"
wal = open(db + "-wal", "rb").read()
_, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">8I", wal[:32])

commits, current, offset = [], [], 32
while offset + 24 + page_size <= len(wal):
    page, commit_size, s1, s2, _, _ = struct.unpack(">6I", wal[offset:offset + 24])
    if (s1, s2) != (salt1, salt2):
        break
    current.append(page)
    if commit_size:
        commits.append(current)
        current = []
    offset += 24 + page_size

con = sqlite3.connect("file:" + db + "?mode=ro", uri=True)
owner = {page: name for name, page in con.execute("SELECT name, pageno FROM dbstat")}
counts = collections.Counter(owner.get(p, "?") for c in commits[-last:] for p in c)
frames = sum(counts.values())
print(f"page size {page_size}; {len(commits)} commits in the WAL, the last {min(last, len(commits))} wrote {frames} pages")
for name, n in counts.most_common():
    print(f"{n:8d} {100 * n / max(frames, 1):5.1f}%  {name}")
