#!/usr/bin/env python3
"""Finds import cycles between the source files of a crate.

Every `use crate::...`, `use super::...` and `use self::...` line (with
`pub`, groups in braces, several lines) of src/**/*.rs is resolved to the
file that defines the module it names: the longest path that is a file
(`a/b.rs` or `a/b/mod.rs`); what is left is an item of that file. A file
importing from its own module (`use self::`) or from a file inside itself
is not an edge. `mod` declarations are structure, not imports, and are not
edges either. Prints each cycle (a strongly connected component of more
than one file) and exits 1 if there is one.

Usage: scripts/import-cycles.py [SRC_DIR]   (default: src)
"""

import re
import sys
from pathlib import Path

USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M | re.S)


def module_of(path: Path, src: Path) -> list[str]:
    """The module path of a file: src/a/b.rs and src/a/b/mod.rs are a::b."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def file_of(module: list[str], src: Path) -> Path | None:
    if not module:
        return src / "lib.rs"
    base = src.joinpath(*module)
    for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
        if candidate.is_file():
            return candidate
    return None


def expand(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree]
    head, _, rest = tree.partition("{")
    inner = rest[: rest.rfind("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    out = []
    for item in filter(None, items):
        for path in expand(item):
            out.append(head + path if path != "self" else head.rstrip(":"))
    return out


def resolve(path: str, here: list[str], src: Path) -> list[str] | None:
    """The absolute module path a `use` names (with its item), or None for
    other crates. `here` is the file's module (a mod.rs is its directory's),
    so `super` is always one level up from it."""
    segments = path.split("::")
    current = list(here)
    if segments[0] == "crate":
        return segments[1:]
    if segments[0] in ("super", "self"):
        while segments and segments[0] in ("super", "self"):
            if segments[0] == "super":
                current = current[:-1]
            segments = segments[1:]
        return current + segments
    # A path that starts with a child module of this one (`use http::X;`
    # in a mod.rs) is relative too; anything else is another crate.
    if file_of(current + segments[:1], src) is not None:
        return current + segments
    return None


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    files = sorted(p for p in src.rglob("*.rs"))
    edges: dict[Path, set[Path]] = {f: set() for f in files}
    for file in files:
        here = module_of(file, src)
        text = file.read_text()
        # Test modules may reach anywhere; they are not part of the layering.
        text = text.split("#[cfg(test)]\nmod tests {")[0]
        for match in USE.finditer(text):
            for path in expand(match.group(1)):
                module = resolve(path, here, src)
                if module is None:
                    continue
                # The longest prefix that is a file.
                target = None
                for cut in range(len(module), -1, -1):
                    target = file_of(module[:cut], src)
                    if target is not None:
                        break
                if target is None or target == file:
                    continue
                edges[file].add(target)
    cycles = strongly_connected(edges)
    for cycle in cycles:
        names = sorted(str(p.relative_to(src)) for p in cycle)
        print("import cycle: " + " <-> ".join(names))
        for a in sorted(cycle):
            for b in sorted(edges[a] & cycle):
                print(f"  {a.relative_to(src)} uses {b.relative_to(src)}")
    count = sum(len(v) for v in edges.values())
    print(f"{len(files)} files, {count} imports between them, {len(cycles)} cycles")
    return 1 if cycles else 0


def strongly_connected(edges: dict[Path, set[Path]]) -> list[set[Path]]:
    """Tarjan's algorithm; components of more than one file."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    out: list[set[Path]] = []
    counter = [0]

    def visit(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
