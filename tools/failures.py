#!/usr/bin/env python3
"""Prints each failed test's captured output from a `cargo test` log, briefly.

    python3 tools/failures.py LOG

CI shows only the start and the end of a long run; the node processes' logs fill the middle,
where libtest prints why a test failed. This repeats those blocks last: per failed test at most
MAX_LINES lines of MAX_WIDTH characters, with ANSI colour codes removed.
"""
import re
import sys

MAX_LINES = 60
MAX_WIDTH = 400
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADER = re.compile(r"^---- (\S+) stdout ----$")


def blocks(lines):
    """Yields (test name, captured lines) for every `---- name stdout ----` block."""
    name, body = None, []
    for raw in lines:
        line = ANSI.sub("", raw.rstrip("\n"))
        header = HEADER.match(line)
        if header:
            if name:
                yield name, body
            name, body = header.group(1), []
        elif name and (line == "failures:" or line.startswith("test result:")):
            yield name, body
            name, body = None, []
        elif name:
            body.append(line)
    if name:
        yield name, body


def main(path):
    with open(path, errors="replace") as f:
        found = list(blocks(f))
    for name, body in found:
        while body and not body[-1].strip():
            body.pop()
        print(f"---- {name} (last {min(len(body), MAX_LINES)} of {len(body)} lines)")
        for line in body[-MAX_LINES:]:
            print(line if len(line) <= MAX_WIDTH else line[:MAX_WIDTH] + " …")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
