"""Stand-ins for CUDA graphs on the CPU, for tests: ``Direct`` reruns the step at every
replay; ``Recorded`` records its aten ops once and replays them, as a CUDA graph does.

A CUDA graph replays the kernels a capture recorded, with the arguments they had then:
the same tensors (whatever values they hold now), the same Python numbers, the same
shapes. Anything the step computes in Python, or any tensor it looks up anew each time,
is frozen at capture. ``Direct`` (a replay that reruns the step) cannot show such a
mistake; this can. ``Recorded.capture`` runs the step once under a dispatch mode that
logs every aten op, with an undo log of the tensors from outside the step that the ops
write to (and the generator's state), so that, like a capture, it leaves them as they
were. A replay runs the logged ops again in order: an argument that an earlier logged
op produced is replaced by that op's new output; every other argument (a tensor from
outside, a number, a generator) is passed exactly as logged. Random ops draw anew from
their generator, as a CUDA graph registered with it does.

A value read on the host inside the step (``.item()``, ``bool()``) fails the capture,
as on a GPU. What it cannot show: host-to-device copies (a real capture refuses them
too), and kernels that bypass aten (Triton's, which the CPU path does not use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

Op = tuple[Any, tuple, dict, Any]


def _written(func, args: tuple, kwargs: dict) -> list[Tensor]:
    """The tensor arguments an op writes to, by its schema's alias annotations."""
    out: list[Tensor] = []
    for i, arg in enumerate(func._schema.arguments):
        if arg.alias_info is None or not arg.alias_info.is_write:
            continue
        value = args[i] if i < len(args) else kwargs.get(arg.name)
        out += [t for t in tree_flatten(value)[0] if isinstance(t, Tensor)]
    return out


class _Recording(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Op] = []
        self.made: set[int] = set()  # storages first seen as a logged op's output
        self.undo: list[tuple[Tensor, Tensor]] = []

    @staticmethod
    def _storage(t: Tensor) -> int:
        return t.untyped_storage().data_ptr()

    def _storages(self, tree: Any) -> set[int]:
        return {self._storage(t) for t in tree_flatten(tree)[0] if isinstance(t, Tensor)}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:  # .item(), bool(), .tolist()
            raise RuntimeError(
                "operation not permitted when stream is capturing: the step reads a value "
                "on the host, as a CUDA graph capture refuses"
            )
        for t in _written(func, args, kwargs):
            if self._storage(t) not in self.made:  # a tensor from outside: keep its values
                self.undo.append((t, t.clone()))
        inputs = self._storages((args, kwargs))
        out = func(*args, **kwargs)
        self.made |= self._storages(out) - inputs
        self.ops.append((func, args, kwargs, out))
        return out


class Direct:
    """The capture's contract at its simplest: the replay is the step itself."""

    def warm(self, run: Callable[[], Tensor]) -> Tensor:
        return run()

    def capture(self, run: Callable[[], Tensor]) -> Callable[[], Tensor]:
        return run


class Recorded:
    """The ``Capturer`` of ``engine.step_graph`` with CUDA-graph semantics on the CPU."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.replays = 0

    def warm(self, run: Callable[[], Tensor]) -> Tensor:
        return run()

    def capture(self, run: Callable[[], Tensor]) -> Callable[[], Tensor]:
        rng = self.generator.get_state()
        recording = _Recording()
        with recording:
            result = run()
        for t, before in reversed(recording.undo):  # as if nothing had run
            t.copy_(before)
        self.generator.set_state(rng)
        ops = recording.ops

        def replay() -> Tensor:
            now: dict[int, Any] = {}  # id of a logged output -> this replay's value

            def swap(x: Any) -> Any:
                return now.get(id(x), x) if isinstance(x, Tensor) else x

            for func, args, kwargs, out in ops:
                new = func(*tree_map(swap, args), **tree_map(swap, kwargs))
                for old, fresh in zip(tree_flatten(out)[0], tree_flatten(new)[0], strict=True):
                    if isinstance(old, Tensor):
                        now[id(old)] = fresh
            self.replays += 1
            return now.get(id(result), result)

        return replay
