#!/usr/bin/python3
"""architecture.py — checks the shape docs/ARCHITECTURE.md promises: src/ is built in floors and no
include climbs back up a floor; src/ never touches MPI; no function in src/ or mpi/ is over 80
lines unless a comment right above it says why ("long: ..."); mpi/ stays under 800 lines.
Usage: architecture.py REPO [--check floors,mpi,functions,mpi-size]. Prints each violation;
exit 1 when there is any."""
import os
import re
import sys

# Bottom to top: a file may include headers of its own floor and of floors below it.
FLOORS = ["util", "nn", "io", "data", "dist", "prune", "train", "report", "run", "cli"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
MAX_FUNCTION_LINES = 80
MAX_MPI_LINES = 800


def sources(root, folder):
    for dirpath, _, names in os.walk(os.path.join(root, folder)):
        for n in sorted(names):
            if n.endswith((".c", ".h")):
                yield os.path.join(dirpath, n)


def floor_of(path, root):
    rel = os.path.relpath(path, os.path.join(root, "src"))
    return rel.split(os.sep)[0]


def check_floors(root):
    bad = []
    for path in sources(root, "src"):
        here = floor_of(path, root)
        if here not in FLOORS:
            bad.append(f"{path}: folder '{here}' is not a floor ({', '.join(FLOORS)})")
            continue
        for no, line in enumerate(open(path, encoding="utf-8"), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = m.group(1)
            if "/" not in target:
                bad.append(f"{path}:{no}: include \"{target}\" names no floor (write \"floor/{target}\")")
                continue
            there = target.split("/")[0]
            if there not in FLOORS:
                bad.append(f"{path}:{no}: include \"{target}\": '{there}' is not a floor")
            elif FLOORS.index(there) > FLOORS.index(here):
                bad.append(f"{path}:{no}: {here}/ includes \"{target}\", a floor above it")
    return bad


def check_mpi(root):
    bad = []
    for path in sources(root, "src"):
        for no, line in enumerate(open(path, encoding="utf-8"), 1):
            code = line.split("//")[0]
            if re.search(r"#\s*include\s*<mpi\.h>|\bMPI_[A-Z][a-z_]*\s*\(|\bMPI_Comm\b", code):
                bad.append(f"{path}:{no}: MPI in src/ (only mpi/ may call MPI)")
    return bad


def strip_comments_and_strings(text):
    """The text with comments and string/char literals blanked, newlines kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j]) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    """(name, first line, line count, line before) of each function definition at file scope."""
    raw = open(path, encoding="utf-8").read()
    text = strip_comments_and_strings(raw)
    lines = raw.split("\n")
    depth, start, found = 0, None, []
    for i, c in enumerate(text):
        if c == "{":
            if depth == 0:
                head = text[max(0, i - 400):i]
                if re.search(r"\)\s*$", head) and not re.search(r"(=|\bstruct\b[^;{}()]*|\benum\b[^;{}()]*)\s*$", head):
                    start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0 and start is not None:
                first = text.count("\n", 0, start)
                last = text.count("\n", 0, i)
                m = re.search(r"(\w+)\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*$", text[max(0, start - 400):start])
                name = m.group(1) if m else "?"
                sig = text.rfind("\n", 0, start - len(m.group(0)) if m else start)
                sig_line = text.count("\n", 0, sig + 1)
                found.append((name, sig_line + 1, last - first + 1, lines[sig_line - 1] if sig_line else ""))
                start = None
    return found


def check_functions(root):
    bad = []
    for folder in ("src", "mpi"):
        for path in sources(root, folder):
            if not path.endswith(".c"):
                continue
            for name, line, count, before in functions(path):
                if count > MAX_FUNCTION_LINES and "long:" not in before:
                    bad.append(f"{path}:{line}: {name} is {count} lines (over {MAX_FUNCTION_LINES}; "
                               "a comment line \"/* long: why */\" right above it says why)")
    return bad


def check_mpi_size(root):
    total = sum(len(open(p, encoding="utf-8").read().split("\n")) - 1 for p in sources(root, "mpi"))
    return [f"mpi/ is {total} lines (over {MAX_MPI_LINES})"] if total > MAX_MPI_LINES else []


CHECKS = {"floors": check_floors, "mpi": check_mpi, "functions": check_functions, "mpi-size": check_mpi_size}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    wanted = list(CHECKS)
    if "--check" in sys.argv:
        wanted = sys.argv[sys.argv.index("--check") + 1].split(",")
    bad = [v for name in wanted for v in CHECKS[name](root)]
    for v in bad:
        print(v)
    print(f"architecture: {len(bad)} violations ({', '.join(wanted)})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
