#!/usr/bin/env python3
"""Rewrites a codegen/cuda .cu file into host C++ for the CUDA CPU emulation.

  rewrite_cu.py IN.cu OUT.cc

- `kernel<<<grid, block[, smem[, stream]]>>>(args)` becomes
  `::ptc::emu::Launcher(kernel, "kernel", grid, block[, smem[, stream]])(args)`;
- `__shared__ [__align__(n)] T name[dims];` becomes a static that every block's first thread to
  declare it poisons (device_shim.h, PoisonShared);
- `extern __shared__ [__align__(n)] T name[];` becomes a pointer to the block's dynamic shared
  memory.
Line numbers are kept (nothing is added or removed across lines), so messages and debuggers
point at the .cu source (a #line directive names it).
"""
import re
import sys

IDENT = re.compile(r"[A-Za-z0-9_:]")


def kernel_start(text, end):
    """Start of the kernel expression that ends just before `end` (an identifier, optionally
    qualified, with optional balanced template arguments)."""
    i = end
    while i > 0 and text[i - 1] in " \t\r\n\\":
        i -= 1
    if i > 0 and text[i - 1] == ">":
        depth = 0
        while i > 0:
            i -= 1
            c = text[i]
            if c == ">":
                depth += 1
            elif c == "<":
                depth -= 1
                if depth == 0:
                    break
        while i > 0 and text[i - 1] in " \t":
            i -= 1
    while i > 0 and IDENT.match(text[i - 1]):
        i -= 1
    return i


def rewrite_launches(text):
    out = []
    pos = 0
    while True:
        lt = text.find("<<<", pos)
        if lt < 0:
            out.append(text[pos:])
            return "".join(out)
        gt = text.find(">>>", lt)
        if gt < 0:
            raise SystemExit("unterminated <<< in launch")
        start = kernel_start(text, lt)
        if start >= lt:
            raise SystemExit(f"no kernel name before <<< at offset {lt}")
        kernel = text[start:lt]
        name = " ".join(kernel.replace("\\", " ").split())
        config = text[lt + 3:gt]
        out.append(text[pos:start])
        out.append(f'::ptc::emu::Launcher({kernel}, "{name}", {config})')
        pos = gt + 3


SHARED = re.compile(
    r"(?P<ext>extern\s+)?__shared__\s+(?:__align__\((?P<align>\d+)\)\s+)?"
    r"(?P<type>[A-Za-z_][\w:<>, ]*?)\s+(?P<name>\w+)(?P<dims>(?:\[[^\]]*\])*)\s*;")


def rewrite_shared(text):
    def sub(m):
        typ, name, dims = m.group("type"), m.group("name"), m.group("dims")
        if m.group("ext"):
            if dims != "[]":
                raise SystemExit(f"extern __shared__ {name} must be declared name[]")
            return (f"{typ}* const {name} = "
                    f"reinterpret_cast<{typ}*>(::ptc::emu::DynamicShared(\"{name}\"));")
        align = f"alignas({m.group('align')}) " if m.group("align") else ""
        return (f"static {align}{typ} {name}{dims}; "
                f"::ptc::emu::PoisonShared(&{name}, sizeof({name}), \"{name}\");")
    return SHARED.sub(sub, text)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text = rewrite_shared(rewrite_launches(text))
    if "<<<" in text or "__shared__" in text:
        raise SystemExit(f"{src}: a launch or __shared__ declaration was not rewritten")
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src}"\n')
        f.write(text)


if __name__ == "__main__":
    main()
