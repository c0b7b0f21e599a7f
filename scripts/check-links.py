#!/usr/bin/env python3
"""Checks every relative link in the repository's Markdown files.

A link must name a file or folder inside the repository (the docs have to
stand alone), and a `#anchor` must name a heading of the target file, spelled
the way GitHub makes heading anchors. Links in code blocks and spans are
ignored; http(s) and mailto links are not fetched. Prints one line per broken
link and exits 1 if there is any.

    scripts/check-links.py
"""
import os
import re
import sys

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
SKIP_DIRS = {".git", "target", "node_modules", "vendor", "corpus", "artifacts"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`[^`]*`")


def markdown_files():
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name.endswith(".md"):
                yield os.path.join(folder, name)


def prose_lines(path):
    """The lines outside fenced code blocks, with their numbers."""
    fenced = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                fenced = not fenced
            elif not fenced:
                yield number, line


def slug(heading):
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    seen = {}
    found = set()
    for _, line in prose_lines(path):
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def check(path):
    problems = []
    here = os.path.dirname(path)
    for number, line in prose_lines(path):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = os.path.realpath(os.path.join(here, file_part)) if file_part else path
            where = f"{os.path.relpath(path, ROOT)}:{number}: {target}"
            if resolved != ROOT and not resolved.startswith(ROOT + os.sep):
                problems.append(f"{where}: points outside the repository")
            elif not os.path.exists(resolved):
                problems.append(f"{where}: no such file")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                problems.append(f"{where}: no heading with that anchor")
    return problems


def main():
    problems = [p for path in sorted(markdown_files()) for p in check(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"check-links: {len(problems)} broken link(s)", file=sys.stderr)
        return 1
    print("check-links: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
