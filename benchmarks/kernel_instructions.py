"""PTX instructions per element of lpfl's Triton rounding kernels, built for an H100 here.

    .venv/bin/python benchmarks/kernel_instructions.py [--json FILE]

No GPU is needed: Triton compiles the kernels for sm_90 offline, as the tests do. The
count is a proxy for a kernel's arithmetic, for changes that a GPU slot cannot be spent
on first: a pass over an activation reads and writes 8 bytes per element, so at about
4 TB/s it is bound by memory only while its arithmetic per element stays well below
what the SMs issue in that time. Counted over the kernel's whole PTX (straight-line
code: one program, no loops) and divided by the elements one thread holds.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from lpfl.quant import triton_round

POINTERS = {"x_ptr": "*fp32", "seed_ptr": "*i64", "out_ptr": "*fp32", "amax_ptr": "*i32"}
ALIGNED = {(i,): [["tt.divisibility", 16]] for i in range(4)}


def instructions(ptx: str) -> list[str]:
    """The opcode of each PTX instruction (labels, directives and braces left out)."""
    ops = []
    for line in ptx.splitlines():
        line = line.strip()
        if not line or line.startswith(("//", ".", "{", "}", "$")) or line.endswith(":"):
            continue
        words = line.split()
        ops.append(words[1] if words[0].startswith("@") else words[0])  # predicated
    return ops


def apply_kernel(bits: int, stochastic: bool) -> dict:
    constexprs = dict.fromkeys(["BITS", "STOCHASTIC", "BLOCK"], "constexpr")
    signature = POINTERS | {"C": "i32"} | constexprs
    constants = {"BITS": bits, "STOCHASTIC": stochastic, "BLOCK": triton_round.CHUNK}
    source = ASTSource(triton_round._apply_kernel, signature, constants, ALIGNED)
    kernel = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False}
    )
    ops = instructions(kernel.asm["ptx"])
    per_thread = triton_round.CHUNK // (kernel.metadata.num_warps * 32)
    kinds = collections.Counter(op.split(".")[0] for op in ops)
    return {
        "per_element": round(len(ops) / per_thread, 1),
        "integer_multiplies_per_element": round(kinds["mul"] / per_thread, 1),
        "shared_memory_accesses": sum(".shared" in op for op in ops),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = {
        "date": datetime.date.today().isoformat(),
        "triton": triton.__version__,
        "target": "sm_90 (H100), PTX",
        "command": "benchmarks/kernel_instructions.py",
        "apply_kernel": {
            f"{bits}bit_{'stochastic' if st else 'nearest'}": apply_kernel(bits, st)
            for bits in (8, 6)
            for st in (True, False)
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
