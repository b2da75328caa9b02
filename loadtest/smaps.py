#!/usr/bin/env python3
"""Where a process's resident memory is, by kind of mapping: `loadtest/smaps.py PID`.

V8 allocates its heap in 256 KiB pages, each its own mapping until the kernel merges neighbours;
glibc's malloc arenas are 64 MiB mappings; `[heap]` is the main arena. Session 8 used it on a node
after W1b-style churn (10,000 shoppers, `actors.max_live_isolates = 2000`) to tell V8's heaps
from malloc's: see RESULTS.md.
"""
import collections
import re
import sys

KNOWN_SIZES_KIB = {256: "V8 page (256 KiB)", 65536: "malloc arena (64 MiB)", 131072: "128 MiB"}


def main(pid: str) -> None:
    rows = []
    current = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                size_kib = (end - start) // 1024
                name = fields[5] if len(fields) > 5 else "[anon]"
                if name == "[anon]":
                    name = "[anon] " + KNOWN_SIZES_KIB.get(size_kib, "other sizes")
                current = [name, 0]
                rows.append(current)
            elif line.startswith("Rss:") and current is not None:
                current[1] = int(line.split()[1])
    rss = collections.Counter()
    maps = collections.Counter()
    for name, kib in rows:
        rss[name] += kib
        maps[name] += 1
    for name, kib in rss.most_common(12):
        print(f"{kib // 1024:>8} MiB  {maps[name]:>7} mappings  {name}")
    print(f"{sum(kib for _, kib in rows) // 1024:>8} MiB  {len(rows):>7} mappings  total")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: loadtest/smaps.py PID")
    main(sys.argv[1])
