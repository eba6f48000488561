"""Writes results as the run goes, so a crash or divergence loses nothing already computed.

``results.json`` is rewritten atomically (temp file + rename) after every round;
``metrics.csv`` gets one flushed row per round.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import provenance

LAST_K = 5  # the paper reports mean ± std of the last 5 evaluated rounds


@dataclass(frozen=True)
class RoundMetrics:
    round: int
    test_accuracy: float | None  # None on rounds that were not evaluated
    test_loss: float | None
    train_loss: float
    seconds: float
    clients: int = 0  # sampled this round; each downloads the global model once
    uploads: int = 0  # replies that reached the server
    rejected: int = 0  # clients dropped in training plus replies the server refused
    bytes_up: int = 0  # wire bytes, summed over the round's uploads
    bytes_down: int = 0  # wire bytes, summed over the round's downloads
    quantized_test_accuracy: float | None = None  # with --eval-quantized: activation
    quantized_test_loss: float | None = None  # rounding on, as the reference evaluates
    client_accuracy: float | None = None  # on Flower with client-eval-every: the global
    client_loss: float | None = None  # model on the nodes' own data, sample-weighted
    # Where the round's seconds went (the simulator; each phase ends in a wait for the
    # device, so on a GPU they are the phase's own): client training, encoding the
    # uploads, the server (broadcast, decoding, aggregating) and evaluation.
    train_seconds: float | None = None
    upload_seconds: float | None = None
    server_seconds: float | None = None
    eval_seconds: float | None = None
    # How much the accepted clients' updates disagree (``drift.py``): 0 all alike, 1 all
    # cancelling. None for HeteroFL/SplitMix (sub-models) and rounds with under 2 updates.
    client_drift: float | None = None


PHASES = ("train", "upload", "server", "eval")
TIMINGS = ("seconds", *(f"{phase}_seconds" for phase in PHASES))  # differ run to run


def summarize(
    rounds: list[RoundMetrics], model_fp32_bytes: int | None = None, last: int = LAST_K
) -> dict[str, Any]:
    """The paper's statistic (mean ± std of the last 5 evaluated accuracies) and traffic totals."""
    accs = [r.test_accuracy for r in rounds if r.test_accuracy is not None][-last:]
    up, down = sum(r.bytes_up for r in rounds), sum(r.bytes_down for r in rounds)
    summary: dict[str, Any] = {
        "final_accuracy_mean": float(np.mean(accs)) if accs else None,
        "final_accuracy_std": float(np.std(accs)) if accs else None,
        "evaluated_rounds": len(accs),
        "bytes_up_total": up,
        "bytes_down_total": down,
    }
    timed = [r for r in rounds if r.train_seconds is not None]
    if timed:  # medians: a run's first round also compiles and captures
        summary["round_seconds_median"] = float(np.median([r.seconds for r in timed]))
        summary["phase_seconds_median"] = {
            phase: float(np.median([getattr(r, f"{phase}_seconds") or 0.0 for r in timed]))
            for phase in PHASES
        }
    if model_fp32_bytes:
        uploads, downloads = sum(r.uploads for r in rounds), sum(r.clients for r in rounds)
        summary["up_ratio_to_fp32"] = up / (uploads * model_fp32_bytes) if uploads else None
        summary["down_ratio_to_fp32"] = down / (downloads * model_fp32_bytes) if downloads else None
    return summary


def _json_safe(value: Any) -> Any:
    """NaN is not JSON; write it as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_ROUNDS = "<rounds>"  # a placeholder: results.json's rounds, spliced in by _write_json


def _row(metrics: RoundMetrics) -> dict[str, Any]:
    """One round's values as metrics.csv and results.json write them (NaN as null)."""
    return {k: _json_safe(v) for k, v in asdict(metrics).items()}


def _round_text(row: dict[str, Any]) -> str:
    """One round (``_row``) as it stands in results.json's rounds list (two spaces in)."""
    return "  " + json.dumps(row, indent=1).replace("\n", "\n  ")


class Recorder:
    def __init__(
        self,
        out: str | os.PathLike | None,
        config: dict[str, Any],
        model_fp32_bytes: int | None = None,
        history: dict[str, Any] | None = None,
        trackers: list[Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """``history`` (from ``state_dict``) continues a resumed run's records;
        ``trackers`` (see trackers.py) also receive every round; ``data`` says what the run
        trained on (sample counts), for reports to tell a subset from the full dataset.

        Each process that computes rounds of the run adds a session (device, lpfl commit,
        torch, command, times) from its first round on, so a resumed run names every
        machine its rounds came from."""
        self.data = data or {}
        self.trackers = trackers or []
        history = history or {"rounds": [], "rejections": []}
        self.rounds = [RoundMetrics(**r) for r in history["rounds"]]
        self._round_texts: list[str] = []  # results.json's rounds: see _write_json
        self.rejections: list[dict[str, Any]] = list(history["rejections"])
        here = provenance.session(config.get("device", "cpu"))
        self.sessions = [*history.get("sessions", []), {"first_round": len(self.rounds) + 1} | here]
        self.config = config
        self.model_fp32_bytes = model_fp32_bytes
        self.status = "running"
        self.error: str | None = None
        self.dir = Path(out) if out else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._csv = open(self.dir / "metrics.csv", "w", newline="")  # noqa: SIM115
            self._writer = csv.DictWriter(
                self._csv, fieldnames=list(RoundMetrics.__dataclass_fields__)
            )
            self._writer.writeheader()
            for row in map(_row, self.rounds):
                self._round_texts.append(_round_text(row))
                self._write_row(row)
            self._write_json()

    def state_dict(self) -> dict[str, Any]:
        return {
            "rounds": [asdict(r) for r in self.rounds],
            "rejections": self.rejections,
            "sessions": self.sessions,
        }

    def describe_session(self, **facts: Any) -> None:
        """Add facts about this process's session (e.g. its start-up seconds)."""
        self.sessions[-1].update(facts)

    def _write_row(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._csv.flush()

    def reject(self, round_: int, client: int, reason: str) -> None:
        """Keep why a client's update was not used; written with the next round's record."""
        self.rejections.append({"round": round_, "client": client, "reason": reason})

    def record(self, metrics: RoundMetrics) -> None:
        self.rounds.append(metrics)
        for tracker in self.trackers:
            tracker.log(metrics)
        if self.dir is not None:
            row = _row(metrics)
            self._round_texts.append(_round_text(row))
            self._write_row(row)
            self._write_json()

    def finish(self, status: str = "completed", error: str | None = None) -> None:
        self.status, self.error = status, error
        self.sessions[-1]["finished"] = provenance.now()
        for tracker in self.trackers:
            tracker.close()
        if self.dir is not None:
            self._write_json()
            self._csv.close()

    def summary(self) -> dict[str, Any]:
        return summarize(self.rounds, self.model_fp32_bytes)

    def as_dict(self) -> dict[str, Any]:
        """results.json's content; its rounds as ``_ROUNDS`` (``_write_json`` fills them in)."""
        result: dict[str, Any] = {
            "config": self.config,
            "status": self.status,
            "rounds": _ROUNDS,
            "summary": self.summary(),
            "rejections": self.rejections,
            "data": self.data,
            "sessions": self.sessions,
        }
        if self.error:
            result["error"] = self.error
        return result

    def _write_json(self) -> None:
        assert self.dir is not None
        tmp = self.dir / "results.json.tmp"
        # Rewritten every round: the rounds, serialised once each, are spliced in, so a
        # long run's writes do not grow into re-serialising every earlier round (which
        # made the writes of a run quadratic in its length).
        rounds = "[\n" + ",\n".join(self._round_texts) + "\n ]" if self._round_texts else "[]"
        # As a key and value, unescaped: no string inside a value can match it.
        slot = f'"rounds": {json.dumps(_ROUNDS)}'
        text = json.dumps(self.as_dict(), indent=1).replace(slot, f'"rounds": {rounds}', 1)
        tmp.write_text(text + "\n")
        os.replace(tmp, self.dir / "results.json")
