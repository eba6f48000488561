"""Milliseconds per forward + backward of each ConvNet layer over a stack of clients:
torch's grouped convolution under ``vmap`` vs lpfl's im2col rule (``models/input_conv.py``).

    python benchmarks/stacked_conv.py                        # a GPU: 32 clients x batch 32
    python benchmarks/stacked_conv.py --clients 2 --batch 4  # a CPU smoke run

lpfl uses its rule for the input layer only. This says, layer by layer and with and
without TF32, whether it would pay for the 128-channel layers too (their unfolded input
is 9x the layer's own input), so that the rule's reach follows a measurement. Prints one
JSON object; each row also gives the largest relative difference between the two.
"""

from __future__ import annotations

import json
import sys

import torch
from provenance import provenance
from stacked_timing import forward_backward_ms, stack_parser
from torch import nn
from torch.func import functional_call, vmap

from lpfl.models.input_conv import InputConv2d

LAYERS = {  # (in channels, out channels, input side) of the paper's CIFAR-10 ConvNet
    "stage 1 (input)": (3, 128, 32),
    "stage 2": (128, 128, 16),
    "stage 3": (128, 128, 8),
}


def timed(conv: nn.Module, params: dict, x: torch.Tensor, repeats: int) -> tuple[float, list]:
    """(median ms of forward + gradients, the last output and gradients): weight and bias,
    and the input's where it requires one (every layer but the first)."""
    wrt = [*params.values(), *([x] if x.requires_grad else [])]

    def forward() -> torch.Tensor:
        return vmap(lambda p, xx: functional_call(conv, p, (xx,)))(params, x)

    return forward_backward_ms(forward, wrt, repeats)


def main() -> None:
    args = stack_parser(__doc__).parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    out: dict = {
        **provenance(device),
        "clients": args.clients,
        "batch": args.batch,
        "ms": {},
    }
    for tf32 in (False, True) if cuda else (False,):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        for name, (c_in, c_out, side) in LAYERS.items():
            torch.manual_seed(0)
            grouped = nn.Conv2d(c_in, c_out, 3, padding=1).to(device)
            stacked = InputConv2d(c_in, c_out, 3, padding=1).to(device)
            params = {
                n: torch.randn(args.clients, *p.shape, device=device, requires_grad=True)
                for n, p in grouped.named_parameters()
            }
            x = torch.randn(args.clients, args.batch, c_in, side, side, device=device)
            x.requires_grad_(c_in > 3)  # a hidden layer passes its error on
            ms_grouped, ref = timed(grouped, params, x, args.repeats)
            ms_stacked, got = timed(stacked, params, x, args.repeats)
            pairs = zip(got, ref, strict=True)
            diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in pairs)
            row = {
                "grouped": round(ms_grouped, 3),
                "im2col": round(ms_stacked, 3),
                "speedup": round(ms_grouped / ms_stacked, 2),
                "max_relative_difference": diff,
            }
            out["ms"][f"{name}{', tf32' if tf32 else ''}"] = row
            print(json.dumps({name: row}), flush=True, file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
