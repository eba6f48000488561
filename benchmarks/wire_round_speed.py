"""Milliseconds for a round's uploads on the wire, one client at a time vs all at once:
encoding (``encode`` vs ``wire.encode_many``) and decoding (``decode`` vs ``decode_many``).

    .venv/bin/python benchmarks/wire_round_speed.py [--device cuda]

8-bit client models (weights on the BFP grid, as after training) for the digits MLP
(10 clients, the demo) and the paper's FMNIST ConvNet (32 clients). Checks that both
ways give the same bytes and tensors, then prints the median of 7 timings as JSON.
Encoding starts from the training device; decoding happens on the host, as the
server does it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time

import torch

from lpfl.models import build_model
from lpfl.quant import block_quantize
from lpfl.wire import WireFormat, decode, decode_many, encode, encode_many

SETTINGS = {
    "digits MLP": (("mlp", 1, 8, 10), 10),
    "paper FMNIST ConvNet": (("convnet", 1, 28, 10), 32),
}


def encode_one_by_one(states: list[dict[str, torch.Tensor]], fmt: WireFormat) -> list[bytes]:
    return [encode(s, fmt) for s in states]


def decode_one_by_one(payloads: list[bytes]) -> list[dict[str, torch.Tensor]]:
    return [decode(p) for p in payloads]


def decode_together(payloads: list[bytes]) -> list:
    return decode_many(payloads, [None] * len(payloads))


def median_ms(run, *args) -> float:
    times = []
    for _ in range(7):
        tic = time.perf_counter()
        run(*args)
        times.append(time.perf_counter() - tic)
    return round(statistics.median(times) * 1e3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    fmt = WireFormat(bits=8)
    out: dict = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "CPU",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["benchmarks/wire_round_speed.py", *sys.argv[1:]]),
        "ms_per_round": {},
    }
    g = torch.Generator().manual_seed(0)
    for name, (arch, clients) in SETTINGS.items():
        base = build_model(*arch).state_dict()
        states = [
            {
                n: block_quantize(
                    t + 0.01 * torch.randn(t.shape, generator=g), 8, "BC", "nearest"
                ).to(args.device)
                for n, t in base.items()
            }
            for _ in range(clients)
        ]
        payloads = encode_one_by_one(states, fmt)
        if encode_many(states, fmt) != payloads:
            sys.exit(f"{name}: encode_many differs from encode")
        alone, together = decode_one_by_one(payloads), decode_together(payloads)
        pairs = zip(alone, together, strict=True)
        if any(any(not torch.equal(a[n], b[n]) for n in a) for a, b in pairs):
            sys.exit(f"{name}: decode_many differs from decode")
        out["ms_per_round"][f"{name}, {clients} clients"] = {
            "encode_one_by_one": median_ms(encode_one_by_one, states, fmt),
            "encode_many": median_ms(encode_many, states, fmt),
            "decode_one_by_one": median_ms(decode_one_by_one, payloads),
            "decode_many": median_ms(decode_together, payloads),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
