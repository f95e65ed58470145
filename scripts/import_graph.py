#!/usr/bin/env python3
"""The import graph of the core crate (`shared/src`), file by file.

An edge runs from a file to every file whose module it names: in a `use` (`crate::…`,
`super::…`, `self::…` or a child module's name) or in a path written in the code. A module's
`mod` declarations are not edges, and test-only code (`#[cfg(test)]` modules, files declared
under `#[cfg(test)]`) is left out: the graph is the build's layering.

Prints the number of import cycles (strongly connected groups of more than one file), the
largest, and the depth (the longest chain of imports, cycles counted as one step). With
`--check` it exits 1 when there is a cycle, so a circle cannot come back unnoticed.
"""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "shared" / "src"

# A dialect's folder holds two layers: its wire half (events, envelope, error body), which
# publishing and delivery build on, and its HTTP half (these files), which is built on them and
# on the router. `--top` counts the HTTP halves as a node of their own, `dialect:http`.
DIALECT_HTTP_HALF = {"routes", "auth", "error_response"}

# The one circle allowed between top-level modules (`--top --check`): the router (`api`) serves
# every dialect's routes, and each dialect's HTTP half is written with the router's request and
# response helpers (`api::route`, `api::request`). File by file there is no cycle.
ALLOWED_TOP_CYCLES = [{"api", "dialect:http"}]


def module_path(file: Path) -> tuple:
    rel = file.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests_and_comments(text: str) -> str:
    # A `#[cfg(test)] mod x { … }` block runs to the end of its file in this crate's style.
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod \w+ \{", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def expand_use_tree(tree: str) -> list:
    """`a::{b::{c, d}, e}` → [`a::b::c`, `a::b::d`, `a::e`]."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix: str, s: str):
        depth = 0
        start = 0
        items = []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:i])
                start = i + 1
        items.append(s[start:])
        for item in items:
            if not item:
                continue
            brace = item.find("{")
            if brace >= 0:
                walk(prefix + item[:brace], item[brace + 1 : item.rfind("}")])
            else:
                out.append(prefix + item)

    walk("", tree)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 when a cycle exists")
    parser.add_argument("--verbose", action="store_true", help="print the files of each cycle")
    parser.add_argument("--top", action="store_true", help="one node per top-level module, not per file")
    parser.add_argument("--why", action="store_true", help="with --top: the file imports behind each cycle's edges")
    args = parser.parse_args()

    files = sorted(p for p in ROOT.rglob("*.rs"))
    modules = {module_path(f): f for f in files}
    # Files declared under #[cfg(test)] are test code.
    test_only = set()
    for f in files:
        for m in re.finditer(r"#\[cfg\(test\)\]\s*\n\s*(?:pub(?:\([^)]*\))?\s+)?mod (\w+);", f.read_text()):
            child = module_path(f) + (m.group(1),)
            if child in modules:
                test_only.add(child)
    for mod in list(test_only):
        for other in modules:
            if other[: len(mod)] == mod:
                test_only.add(other)
    modules = {m: f for m, f in modules.items() if m not in test_only}

    # `pub use child::Item;` in a module: a path through the module to `Item` leads to `child`.
    reexports = {m: {} for m in modules}
    for mod, file in modules.items():
        text = strip_tests_and_comments(file.read_text())
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text):
            for path in expand_use_tree(m.group(1)):
                segs = [s for s in path.split("::") if s]
                if segs and segs[-1] != "*":
                    reexports[mod][segs[-1]] = segs

    def resolve(segments: tuple, seen=0):
        for n in range(len(segments), -1, -1):
            if segments[:n] in modules:
                mod = segments[:n]
                rest = segments[n:]
                if rest and rest[0] in reexports[mod] and seen < 8:
                    return resolve(absolute(mod, reexports[mod][rest[0]]) + rest[1:], seen + 1)
                return mod
        return None

    def absolute(mod: tuple, segs: list):
        if segs[0] == "crate":
            return tuple(segs[1:])
        base = list(mod)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        return tuple(base + segs)

    edges = {m: set() for m in modules}
    for mod, file in modules.items():
        text = strip_tests_and_comments(file.read_text())
        children = {m[-1] for m in modules if len(m) == len(mod) + 1 and m[: len(mod)] == mod}
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths.extend(expand_use_tree(m.group(1)))
        # A module imported by name (`use crate::dialect::zettle;`) and named in a path further
        # down (`zettle::routes::HTTP`): that path leads past the module.
        for path in list(paths):
            segs = [x for x in path.split("::") if x]
            if len(segs) > 1 and segs[0] in ("crate", "super", "self") and absolute(mod, segs) in modules:
                alias = segs[-1]
                for rest in re.findall(rf"(?<![\w:]){alias}::(\w+(?:::\w+)*)", text):
                    paths.append("::".join(segs + [rest]))
        paths.extend(re.findall(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", text))
        for child in children:
            paths.extend(re.findall(rf"(?<![\w:])({child}(?:::\w+)+)", text))
        for path in paths:
            segs = [s for s in path.split("::") if s and s != "*"]
            if not segs:
                continue
            if segs[0] == "crate":
                target = tuple(segs[1:])
            elif segs[0] in ("super", "self"):
                base = list(mod)
                while segs and segs[0] in ("super", "self"):
                    if segs[0] == "super":
                        base = base[:-1]
                    segs = segs[1:]
                target = tuple(base + segs)
            elif segs[0] in children:
                target = mod + tuple(segs)
            else:
                continue
            found = resolve(target)
            if found is not None and found != mod:
                edges[mod].add(found)

    file_edges = edges

    def top(m: tuple) -> tuple:
        if m[:1] == ("dialect",) and len(m) == 3 and m[2] in DIALECT_HTTP_HALF:
            return ("dialect:http",)
        return m[:1]

    if args.top:
        collapsed = {}
        for v, ws in edges.items():
            collapsed.setdefault(top(v), set()).update(top(w) for w in ws if top(w) != top(v))
        edges = collapsed
        modules = {m: None for m in edges}

    # Tarjan's strongly connected components.
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(group)

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            connect(v)

    group_of = {v: i for i, g in enumerate(groups) for v in g}
    # Longest chain over the condensation (Tarjan emits groups in reverse topological order).
    depth = [1] * len(groups)
    for i, g in enumerate(groups):
        for v in g:
            for w in edges[v]:
                j = group_of[w]
                if j != i:
                    depth[i] = max(depth[i], depth[j] + 1)
    cycles = [g for g in groups if len(g) > 1]
    name = lambda m: "/".join(m) or "lib"
    print(f"files: {len(modules)}, import edges: {sum(len(e) for e in edges.values())}")
    print(f"cycles: {len(cycles)}, largest: {max((len(g) for g in cycles), default=0)} files, depth: {max(depth)}")
    if args.verbose:
        for v in sorted(modules):
            print(f"  {name(v)} -> {', '.join(sorted(name(w) for w in edges[v]))}")
        for g in cycles:
            print("  cycle:", ", ".join(sorted(name(m) for m in g)))
    if args.why:
        for g in cycles:
            for a in sorted(g):
                for b in sorted(edges[a] & set(g)):
                    for f in sorted(file_edges):
                        if top(f) == a:
                            for w in sorted(file_edges[f]):
                                if top(w) == b:
                                    print(f"  {name(a)} -> {name(b)}: {name(f)} -> {name(w)}")
    if args.top:
        allowed = [frozenset((m,) for m in pair) for pair in ALLOWED_TOP_CYCLES]
        cycles = [g for g in cycles if frozenset(g) not in allowed]
    if args.check and cycles:
        for g in cycles:
            print("  cycle:", ", ".join(sorted(name(m) for m in g)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
