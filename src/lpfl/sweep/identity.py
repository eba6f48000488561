"""A run's identity: the hash of the settings that can change its results.

The hash names the run's folder, so the same experiment always lands in the same place
and a rerun of a sweep can recognise work already done. It is computed from the resolved
config (every field, defaults included) minus the fields in ``NOT_IDENTITY``:

- ``out``: where results go, not what they are;
- ``device``: CPU and GPU runs of one setting are the same experiment (their float
  rounding may differ in the last bits, which no table resolves);
- ``data_dir``: where the dataset lives, not which dataset it is;
- ``checkpoint_every``: how often progress is saved; a resumed run ends exactly as an
  uninterrupted one;
- ``fused_quant``: the fused rounding kernel computes bit-identical values;
- ``fused_norm``: the fused GroupNorm + ReLU kernels differ from torch's ops by float32
  rounding, like a change of device;
- ``cuda_graph``: a captured step replays the eager step's kernels on the same values;
- ``engine``: both engines train the same clients on the same batches (with nearest
  rounding they agree to 1e-4); like a change of device, only the stochastic rounding's
  random draws differ, and ``auto`` picks a different engine on the CPU and on CUDA.

Every other field stays, including ``eval_every`` (it decides which rounds the final
accuracy averages) and ``compression`` (lossless, but it changes the byte counts).
Consequence: adding a field to ``RunConfig`` changes every hash, so runs made before
it are redone rather than silently reused under a setting they never had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

NOT_IDENTITY = frozenset(
    {
        "out", "device", "data_dir", "checkpoint_every", "fused_quant", "fused_norm",
        "cuda_graph", "engine",
    }
)  # fmt: skip
HASH_CHARS = 12


def _canonical(value: Any) -> Any:
    """Write 1.0 as 1 so a float field given as a TOML/Python int hashes the same."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that name a run; also what report compares to spot pooled runs."""
    return {k: _canonical(v) for k, v in config.items() if k not in NOT_IDENTITY}


def run_hash(config: Mapping[str, Any]) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of ``identity(config)``.

    Takes a plain mapping so a results.json written by any run can be hashed the same
    way as a ``RunConfig.to_dict()``.
    """
    text = json.dumps(identity(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
