"""On a GPU: a run cut off midway resumes there and ends exactly as an uninterrupted run.

    python tests/gpu_resume_check.py [DEVICE]   # default cuda; about a minute

A checkpoint loads onto the training device, where the trainers keep their clients'
optimizer states. The server's model and optimizer and the random generators' states
must come back to the host: torch takes a generator's state as a CPU byte tensor only,
and the server adds host tensors to its model. On the CPU (``test_resume.py``, every
CI run) the training device is the host, so only a GPU shows this; before 2026-11-28 a
run resumed on a GPU failed at its first round. For FedAvg with the moving average,
FedAvg with server momentum, FedGen and FedFTG (whose server works on the device, with
the MLP and with the ConvNet), a digits run is cut off in round 5 after a round-4
checkpoint, resumed, and its rounds must equal an uninterrupted run's. Prints one line
per setting; exits non-zero on the first failure.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from power_cut import power_cut_in_round

from lpfl.config import make_config
from lpfl.engine import run_simulation
from lpfl.engine.recorder import TIMINGS

BASE = dict(dataset="digits", model="mlp", clients=6, participation=0.5, rounds=6, bits=8)
SETTINGS = {
    "fedavg, moving average": {},
    "fedavg, server momentum": dict(server_opt="momentum", server_lr=0.5),
    "fedgen": dict(algorithm="fedgen"),
    "fedftg": dict(algorithm="fedftg", fedftg_iterations=2),
    # The paper's model: on a GPU FedFTG runs its teachers as one stack through the
    # ConvNet's own stack rules (im2col input layer, fused GroupNorm + ReLU).
    "fedftg, convnet": dict(algorithm="fedftg", model="convnet", fedftg_iterations=2),
}


def rounds(out: Path) -> list[dict]:
    data = json.loads((out / "results.json").read_text())
    if data["status"] != "completed":
        sys.exit(f"{out.name}: status {data['status']}: {data.get('error')}")
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in data["rounds"]]


def check(name: str, settings: dict, device: str, tmp: Path) -> None:
    quiet = dict(progress=False, log=lambda _m: None)
    straight, crashed = tmp / "straight", tmp / "crashed"
    run_simulation(make_config(**(BASE | settings), device=device, out=str(straight)), **quiet)
    cfg = make_config(**(BASE | settings), device=device, out=str(crashed), checkpoint_every=2)
    try:
        with power_cut_in_round(5):
            run_simulation(cfg, **quiet)
        sys.exit(f"{name}: the power cut did not happen")
    except KeyboardInterrupt:
        pass
    run_simulation(cfg, resume=True, **quiet)
    if rounds(crashed) != rounds(straight):
        sys.exit(f"{name}: the resumed run's rounds differ from the uninterrupted run's")
    print(f"{name}: resumed on {device} after round 4, rounds equal the uninterrupted run's")


if __name__ == "__main__":
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    for name, settings in SETTINGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            check(name, settings, device, Path(tmp))
    print(f"resume on {device}: {len(SETTINGS)} settings pass")
