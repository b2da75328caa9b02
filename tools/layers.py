#!/usr/bin/env python3
"""Checks that the crate's modules only point down its layers (ARCHITECTURE.md, "Layers").

Reads every `crate::…` and `super::…` path in `src/` (use declarations and paths in code,
comments and strings stripped), resolves each to the module it names, and fails on:
  - an edge from a module to one in a higher layer (an upward edge);
  - a cycle between components of the same layer (a component: a module LAYERS names, or a
    top-level module; the files inside one may use each other);
  - an allowed exception (tools/layers-allowed.txt) that no longer occurs, so the list only
    shrinks.

  python3 tools/layers.py            check (exit 1 on a violation)
  python3 tools/layers.py --edges    print every edge between layers with its layer numbers
  python3 tools/layers.py --prune    delete the allowed exceptions that no longer occur
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
ALLOWED = os.path.join(ROOT, "tools", "layers-allowed.txt")

# From the top. A module belongs to the layer of the longest prefix listed here; a module
# may use modules of its own layer or any lower one.
LAYERS = [
    ("composition", ["startup", "shutdown", "telemetry", "demo", "fuzzing", "main", "bin"]),
    ("edge", ["http", "error"]),
    ("storefront actors", ["actors"]),
    ("node", ["node"]),
    ("cluster", ["cluster", "replication"]),
    ("runtime", ["runtime", "storage", "coordination"]),
    ("render", ["render", "engine"]),
    ("store domain", ["store", "catalog", "feed", "cdn"]),
    ("foundations", ["ids", "config", "metrics", "secrets", "egress", "budget", "memory", "sqlite", "clock", "block_limits", "private_files", "trace_context"]),
]


def component_of(module):
    """The unit cycles are checked between: the longest LAYERS prefix naming the module, else
    its top-level module. Files of one component may use each other freely."""
    best = module[:1]
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            parts = prefix.split("::")
            if module[: len(parts)] == parts and len(parts) > len(best):
                best = parts
    return "::".join(best)


def layer_of(module):
    best, best_len = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            parts = prefix.split("::")
            if module[: len(parts)] == parts and len(parts) > best_len:
                best, best_len = rank, len(parts)
    return best


def strip_comments_and_strings(src):
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def file_module(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return rel


def known_modules():
    mods = set()
    for d, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".rs"):
                m = file_module(os.path.join(d, f))
                for k in range(1, len(m) + 1):
                    mods.add(tuple(m[:k]))
    return mods


def split_top(body):
    items, depth, cur = [], 0, []
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    return [i.strip() for i in items if i.strip()]


def expand_group(prefix, body):
    paths = []
    for item in split_top(body):
        m = re.match(r"^((?:\w+::)*)\{(.*)\}$", item, re.S)
        if m:
            paths += expand_group(prefix + [p for p in m.group(1).split("::") if p], m.group(2))
        else:
            item = re.split(r"\s+as\s+", item)[0]
            paths.append(prefix + [p.strip() for p in item.split("::") if p.strip()])
    return paths


def inline_module_spans(src):
    """(start, end, name) of `mod name { … }` blocks, so `super::` inside resolves right."""
    spans = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", src):
        i, depth = m.end(), 1
        while i < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[i], 0)
            i += 1
        spans.append((m.end(), i, m.group(1)))
    return spans


def resolve(path, here, modules):
    """The module a `crate::…`/`super::…`/`self::…` path names (longest known prefix)."""
    if path[0] == "crate":
        target = path[1:]
    else:
        target = list(here)
        rest = list(path)
        while rest and rest[0] in ("super", "self"):
            if rest.pop(0) == "super":
                target = target[:-1]
        target += rest
    for k in range(len(target), 0, -1):
        if tuple(target[:k]) in modules:
            return tuple(target[:k])
    return None


def edges():
    modules = known_modules()
    found = defaultdict(set)  # (from, to) -> files
    for d, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            src = strip_comments_and_strings(open(path, encoding="utf-8").read())
            base = file_module(path)
            spans = inline_module_spans(src)

            def module_at(pos):
                here = list(base)
                for start, end, name in spans:
                    if start <= pos < end:
                        here.append(name)
                return here

            refs = []
            for m in re.finditer(r"\b(crate|super|self)((?:::(?:super|self|\w+))*)::\{", src):
                i, depth = m.end(), 1
                while i < len(src) and depth:
                    depth += {"{": 1, "}": -1}.get(src[i], 0)
                    i += 1
                head = [m.group(1)] + [p for p in m.group(2).split("::") if p]
                refs += [(m.start(), head + p) for p in expand_group([], src[m.end() : i - 1])]
            for m in re.finditer(r"\b(?:crate|super)(?:::\w+)+", src):
                refs.append((m.start(), m.group(0).split("::")))
            for pos, ref in refs:
                here = module_at(pos)
                target = resolve(ref, here, modules)
                if target is None or not here:
                    continue
                src_mod = tuple(base)
                if target[: len(src_mod)] == src_mod or src_mod[: len(target)] == target:
                    continue  # a module and its own children or parents
                found[("::".join(src_mod), "::".join(target))].add(os.path.relpath(path, ROOT))
    return found


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    found = edges()
    allowed = set()
    if os.path.exists(ALLOWED):
        for line in open(ALLOWED, encoding="utf-8"):
            line = line.split("#")[0].strip()
            if line:
                a, b = [s.strip() for s in line.split("->")]
                allowed.add((a, b))

    if "--edges" in sys.argv:
        for (a, b), files in sorted(found.items()):
            la, lb = layer_of(a.split("::")), layer_of(b.split("::"))
            mark = "UP" if la is not None and lb is not None and lb < la else ""
            print(f"{la} {a} -> {lb} {b} {mark} {sorted(files)}")
        return 0

    if "--prune" in sys.argv:
        kept = [l for l in open(ALLOWED, encoding="utf-8").read().splitlines()
                if l.startswith("#") or not l.strip() or tuple(s.strip() for s in l.split("#")[0].split("->")) in found]
        open(ALLOWED, "w", encoding="utf-8").write("\n".join(kept) + "\n")
        return 0

    problems = []
    graph = defaultdict(set)
    for (a, b), files in sorted(found.items()):
        la, lb = layer_of(a.split("::")), layer_of(b.split("::"))
        if la is None or lb is None:
            problem = f"module without a layer: {a if la is None else b} (add it to LAYERS)"
            if problem not in problems:
                problems.append(problem)
            continue
        if lb < la:
            if (a, b) in allowed:
                continue
            problems.append(f"upward edge: {a} ({LAYERS[la][0]}) -> {b} ({LAYERS[lb][0]}) in {', '.join(sorted(files))}")
        elif (a, b) not in allowed and component_of(a.split("::")) != component_of(b.split("::")):
            graph[component_of(a.split("::"))].add(component_of(b.split("::")))
    for comp in cycles(graph):
        problems.append("cycle: " + " -> ".join(comp))
    for a, b in sorted(allowed - set(found)):
        problems.append(f"allowed exception no longer occurs, delete it: {a} -> {b}")

    for p in problems:
        print(p)
    up = sum(1 for (a, b) in found if (a, b) in allowed)
    print(f"layers: {len(found)} edges between modules, {up} allowed exceptions, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
