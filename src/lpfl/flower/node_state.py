"""The optimizer state a node keeps between the rounds it trains in, by round.

A node's Adam moments (``optimizer-state = "persist"``, the reference's default) live
on the node and never travel. Flower keeps them in the node's context, which lasts one
Flower run; a resumed lpfl run is a new Flower run, so a node given a ``state-dir``
keeps them on disk too, under the lpfl run's token, and a resumed run continues
with the states an uninterrupted run would have had.

States are kept by the round that made them, because a resumed server replays the
rounds after its last checkpoint: a node that trained in one of them before the
crash must start the replay from the state it had before, not from the one it made.
So training in round r starts from the newest state made before r, and the node keeps
the newest state made by the server's last checkpointed round plus all newer ones.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context

_KEY = "lpfl-optimizer"  # context.state key
State = dict[str, dict]  # global tensor name -> torch optimizer state of that tensor


class OptimizerStore:
    def __init__(self, context: Context, run_token: str, partition_id: int) -> None:
        """Kept on disk when the node config names a ``state-dir``, else in the context."""
        self.context = context
        state_dir = context.node_config.get("state-dir")
        self.path = (
            Path(str(state_dir)) / f"lpfl-{run_token}-partition-{partition_id}.pt"
            if state_dir
            else None
        )

    def load(self, server_round: int) -> State:
        """The state to train round ``server_round`` from ({} before any)."""
        states = self._read()
        made = [r for r in states if r < server_round]
        return states[max(made)] if made else {}

    def save(self, server_round: int, state: State, checkpointed: int) -> None:
        """Keep ``state`` as made in ``server_round``, and what a server resuming after
        round ``checkpointed`` could still ask for."""
        # Read afresh, not kept from ``load``: training updates the loaded state's tensors
        # in place, and the older states kept here must stay as they were made.
        kept = {r: s for r, s in self._read().items() if r < server_round}
        kept[server_round] = state
        if self.path is None:  # a context does not outlive its Flower run: nothing to replay
            checkpointed = server_round
        floor = max((r for r in kept if r <= checkpointed), default=0)
        self._write({r: s for r, s in kept.items() if r >= floor})

    def _read(self) -> dict[int, State]:
        if self.path is not None:
            if not self.path.exists():
                return {}
            blob = self.path.read_bytes()
        elif _KEY in self.context.state:
            blob = self.context.state[_KEY]["state"]
        else:
            return {}
        return torch.load(io.BytesIO(blob), weights_only=True)

    def _write(self, states: dict[int, State]) -> None:
        buffer = io.BytesIO()
        torch.save(states, buffer)
        if self.path is None:
            self.context.state[_KEY] = ConfigRecord({"state": buffer.getvalue()})
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, self.path)  # a node killed mid-write keeps its previous states
