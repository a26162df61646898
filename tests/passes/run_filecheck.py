#!/usr/bin/env python3
"""Runs FileCheck pass tests: each .ir file's `// RUN:` lines, with %s replaced by the file and
`ptc-opt` / `FileCheck` by their paths, through the shell. Prints `N passed, N failed`.

  run_filecheck.py --ptc-opt build/tests/passes/ptc-opt [--filecheck PATH] [FILE.ir | DIR]...

With no files, runs every .ir file under this script's folder.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def collect(paths):
    files = []
    for p in paths or [HERE]:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                files += [os.path.join(root, n) for n in names if n.endswith(".ir")]
        else:
            files.append(p)
    return sorted(files)


def run_lines(path):
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*//\s*RUN:\s*(.*)$", line)
            if m:
                lines.append(m.group(1).strip())
    return lines


def substitute(cmd, path, ptc_opt, filecheck):
    cmd = cmd.replace("%s", shlex.quote(path))
    cmd = re.sub(r"(?<![\w/.-])ptc-opt(?![\w-])", shlex.quote(ptc_opt), cmd)
    cmd = re.sub(r"(?<![\w/.-])FileCheck(?![\w-])", shlex.quote(filecheck), cmd)
    # LLVM's `not` (inverts the exit status) sits next to FileCheck.
    not_tool = os.path.join(os.path.dirname(filecheck), "not")
    cmd = re.sub(r"^not\s", shlex.quote(not_tool) + " ", cmd)
    return cmd


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptc-opt", required=True)
    ap.add_argument("--filecheck", default="/usr/lib/llvm-14/bin/FileCheck")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    passed = failed = 0
    for path in collect(args.files):
        runs = run_lines(path)
        if not runs:
            print(f"FAIL {path}: no // RUN: line")
            failed += 1
            continue
        ok = True
        for cmd in runs:
            full = substitute(cmd, path, os.path.abspath(args.ptc_opt), args.filecheck)
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", full], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                ok = False
                print(f"FAIL {path}\n  RUN: {full}\n{proc.stdout}{proc.stderr}")
                break
        if ok:
            passed += 1
            if args.verbose:
                print(f"PASS {path}")
        else:
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
