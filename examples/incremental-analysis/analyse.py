#!/usr/bin/env python3
"""Analyses one module (a directory of C/C++ sources) and returns its findings as rota's result.

Run by a rota sweep: the module is the first argument ({} in the command, also $ROTA_ITEM).
The findings go to the file named by $ROTA_RESULT (JSON), which rota stores with the task;
without rota, they are printed.
"""

import json
import os
import re
import sys

SOURCE = re.compile(r"\.(c|cc|cpp|h|hpp)$")
MARKER = re.compile(r"\b(TODO|FIXME|XXX|HACK)\b")
FUNCTION_START = re.compile(r"^[A-Za-z].*\)\s*(const\s*)?(override\s*)?\{\s*$")
LONG_FUNCTION = 60  # lines


def analyse_file(path, findings):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    started = None
    for number, line in enumerate(lines, 1):
        if MARKER.search(line):
            findings.append({"file": path, "line": number, "kind": "marker", "text": line.strip()})
        if started is None and FUNCTION_START.match(line):
            started = (number, line.strip())
        elif started is not None and line == "}":
            length = number - started[0]
            if length > LONG_FUNCTION:
                findings.append({"file": path, "line": started[0], "kind": "long_function",
                                 "text": f"{started[1]} ({length} lines)"})
            started = None
    return len(lines)


def main():
    module = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ROTA_ITEM", ".")
    files, lines, findings = 0, 0, []
    for root, _, names in os.walk(module):
        for name in sorted(names):
            if SOURCE.search(name):
                files += 1
                lines += analyse_file(os.path.join(root, name), findings)
    result = {"module": module, "files": files, "lines": lines,
              "markers": sum(f["kind"] == "marker" for f in findings),
              "long_functions": sum(f["kind"] == "long_function" for f in findings),
              "findings": findings}
    out = os.environ.get("ROTA_RESULT")
    if out:
        with open(out, "w") as f:
            json.dump(result, f)
    else:
        json.dump(result, sys.stdout, indent=2)
    print(f"{module}: {files} files, {lines} lines, {len(findings)} findings")


if __name__ == "__main__":
    main()
