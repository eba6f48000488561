"""Is a tensor (or each client's slice of a stack) free of NaN and Inf?

Every client update is checked this way several times a round: by the trainer, which
drops a client that blew up, and on both sides of the wire. ``torch.isfinite(x).all()``
costs several passes and temporaries over the whole tensor: on a 2-core CPU about
0.4 ms for ten clients' copies of the digits MLP's 200x200 weight, 14x a plain sum.
A sum is NaN or ±Inf whenever one of its terms is, so a finite sum proves its slice
finite in one pass; only a slice whose sum is not finite (it holds NaN/Inf, or finite
values overflowed) is looked at element by element, which keeps the answer exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

_WIDE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def finite_slices(x: Tensor, batch_dims: int = 1) -> Tensor:
    """Per index of the first ``batch_dims`` dims: True when that slice holds no NaN/Inf.

    Half-precision sums run in float32, so a large but finite float16 tensor takes the
    fast path too. Integer tensors are always finite. The answer is read on the host
    (a GPU waits here), as every caller needs it there anyway.
    """
    x = x.detach()
    flat = x.unsqueeze(-1) if batch_dims == x.ndim else x.flatten(batch_dims)
    if not flat.is_floating_point():
        return torch.ones(flat.shape[:-1], dtype=torch.bool, device=flat.device)
    ok = flat.sum(-1, dtype=_WIDE.get(flat.dtype, flat.dtype)).isfinite()
    if bool(ok.all()):
        return ok
    return flat.isfinite().all(-1)


def all_finite(x: Tensor) -> bool:
    """Whether the whole tensor holds no NaN/Inf."""
    return bool(finite_slices(x, batch_dims=0))
