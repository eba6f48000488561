"""A real Flower deployment on loopback: one SuperLink, two SuperNodes, ``flwr run``.

Everything runs as separate processes talking over the network, as across machines,
in insecure mode on ports chosen here. Every process a test starts carries a marker in
its environment, inherited by the SuperExec and app processes Flower spawns in their own
sessions; teardown kills every process with the marker, so a failing test leaves nothing
running. Linux only: the marker is read from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lpfl.config import make_config
from lpfl.engine import run_simulation, setup
from lpfl.wire import encode

pytestmark = [
    pytest.mark.flower,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds processes via /proc"),
]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # flower-superlink & co. are installed beside python
MARKER = "LPFL_TEST_PROCESS"
CONNECTION = "lpfl-test"
STARTUP_SECONDS = 60.0
RUN = dict(dataset="digits", model="mlp", alpha=0.5, bits=8, participation=1.0, clients=2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _marked(prefix: str) -> list[int]:
    """Ids of the live processes whose marker starts with ``prefix``."""
    needle = f"{MARKER}={prefix}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if any(var.startswith(needle) for var in environ.split(b"\0")):
            pids.append(int(entry.name))
    return pids


def _kill_marked(prefix: str, command: bytes = b"") -> None:
    """SIGKILL every process marked ``prefix`` (whose command line holds ``command``),
    until none is left (they may spawn more)."""

    def found() -> list[int]:
        return [p for p in _marked(prefix) if command in _command_line(p)]

    for _ in range(20):
        pids = found()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    raise RuntimeError(f"processes marked {prefix!r} survive SIGKILL: {found()}")


def _command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def _wait_for(condition, what: str, timeout: float = STARTUP_SECONDS):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout} s")
        time.sleep(0.2)
    return value


class Federation:
    """The processes of one loopback federation, each with its own FLWR_HOME and log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tag = uuid.uuid4().hex
        self.children: dict[str, subprocess.Popen] = {}
        self.node_ids: dict[str, int] = {}
        self.port = _free_port()

    def env(self, name: str) -> dict[str, str]:
        home = self.root / name / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        return os.environ | {
            MARKER: f"{self.tag}/{name}",
            "FLWR_HOME": str(home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            # Flower's SuperExec finds its app runners on PATH; the code under test is ROOT/src.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
            ),
        }

    def log(self, name: str) -> Path:
        return self.root / name / "log.txt"

    def start(self, name: str, *args: str) -> None:
        env = self.env(name)
        with self.log(name).open("wb") as log:
            self.children[name] = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_superlink(self) -> None:
        self.start(
            "superlink",
            "flower-superlink",
            "--insecure",
            "--disable-runtime-dependency-installation",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        )

        def accepting() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        _wait_for(accepting, "SuperLink listening")

    def start_supernode(self, name: str, partition_id: int, num_partitions: int) -> None:
        """A node keeping its optimizer state on disk, for runs that resume."""
        state_dir = self.root / name / "state"
        config = (
            f"partition-id={partition_id} num-partitions={num_partitions} state-dir='{state_dir}'"
        )
        self.start(
            name,
            "flower-supernode",
            "--insecure",
            "--superlink",
            f"127.0.0.1:{self.port}",
            "--port",
            str(_free_port()),  # the node's own runtime API, for the ClientApp it spawns
            "--node-config",
            config,
        )

        def node_id() -> int | None:
            found = re.search(r"SuperNode ID: (\d+)", self.log(name).read_text(errors="replace"))
            return int(found.group(1)) if found else None

        self.node_ids[name] = _wait_for(node_id, f"{name} registered")

    def kill(self, name: str) -> None:
        """The node's machine dies: its SuperNode and all it spawned, without warning."""
        _kill_marked(f"{self.tag}/{name}")
        self.children[name].wait()

    def kill_server_app(self) -> None:
        """The ServerApp's process dies, as on a crash of the host it runs on; the
        SuperLink and the nodes live on."""
        _wait_for(lambda: any(b"flwr-serverapp" in _command_line(p) for p in
                              _marked(f"{self.tag}/superlink")), "a ServerApp process")  # fmt: skip
        _kill_marked(f"{self.tag}/superlink", b"flwr-serverapp")

    def close(self) -> None:
        _kill_marked(f"{self.tag}/")
        for child in self.children.values():
            child.wait()

    def flwr_run(self, name: str, overrides: dict[str, object]) -> subprocess.Popen:
        """``flwr run`` against this federation, from a CLI home whose config.toml names it."""
        env = self.env(name)
        Path(env["FLWR_HOME"], "config.toml").write_text(
            f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        run_config = self.root / name / "run-config.toml"
        run_config.write_text("".join(f"{key} = {json.dumps(v)}\n" for key, v in overrides.items()))
        command = [str(BIN / "flwr"), "run", str(ROOT), CONNECTION, "--run-config", str(run_config)]
        with self.log(name).open("wb") as log:
            return subprocess.Popen(
                [*command, "--stream"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )

    def logs(self) -> str:
        """Every process's log tail, to read when a test fails."""
        tails = []
        for path in sorted(self.root.glob("*/log.txt")):
            tails.append(f"--- {path.parent.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(tails)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("federation"))
    try:
        fed.start_superlink()
        fed.start_supernode("node0", 0, 2)
        fed.start_supernode("node1", 1, 2)
        yield fed
    finally:
        fed.close()


def _finish(fed: Federation, run: subprocess.Popen, timeout: float) -> None:
    try:
        run.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()
        pytest.fail(f"flwr run did not finish within {timeout} s\n{fed.logs()}")


def _results(out: Path, fed: Federation) -> dict:
    path = out / "results.json"
    assert path.exists(), fed.logs()
    results = json.loads(path.read_text())
    assert results["status"] == "completed", f"{results.get('error')}\n{fed.logs()}"
    return results


def _update_bytes() -> int:
    """What one client's 8-bit update weighs in lpfl's wire format."""
    cfg = make_config(**RUN)
    return len(encode(setup.initial_model(cfg, torch.device("cpu")).state_dict(), cfg.uplink()))


@pytest.fixture(scope="module")
def three_rounds(federation: Federation, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The results of a 3-round run at 8 bits (what other tests compare against)."""
    out = tmp_path_factory.mktemp("three-rounds")
    run = federation.flwr_run("run-all", dict(RUN, rounds=3, out=str(out), **{"round-timeout": 60}))
    _finish(federation, run, timeout=180)
    return _results(out, federation)


def test_deployment_learns_at_8_bits(three_rounds: dict) -> None:
    results = three_rounds
    assert results["config"]["bits"] == 8 and results["config"]["dataset"] == "digits"
    rounds = results["rounds"]
    assert [r["uploads"] for r in rounds] == [2, 2, 2] and not results["rejections"]
    assert rounds[-1]["test_accuracy"] > rounds[0]["test_accuracy"]
    assert rounds[-1]["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert all(r["bytes_up"] == 2 * _update_bytes() for r in rounds)


@pytest.mark.parametrize(
    "method",
    [dict(algorithm="fedgen"), dict(algorithm="splitmix", **{"hetero-widths": "1/2,1/4",
                                                             "splitmix-base": "1/4"})],
    ids=["fedgen", "splitmix"],
)  # fmt: skip
def test_deployment_carries_what_fedgen_and_splitmix_add_to_the_messages(
    federation: Federation, tmp_path: Path, method: dict
) -> None:
    """Over the network too: FedGen's generator and label counts, SplitMix's per-node
    slices and plans. The traffic must be the simulator's for the same run, to the byte."""
    out = tmp_path / "run"
    overrides = dict(RUN, **method, rounds=2, out=str(out), **{"round-timeout": 60})
    run = federation.flwr_run(f"run-{method['algorithm']}", overrides)
    _finish(federation, run, timeout=180)

    results = _results(out, federation)
    rounds = results["rounds"]
    assert [r["uploads"] for r in rounds] == [2, 2] and not results["rejections"]
    settings = {k.replace("-", "_"): v for k, v in overrides.items() if k != "round-timeout"}
    simulated = run_simulation(make_config(**settings | {"out": None}), progress=False,
                               log=lambda _m: None)  # fmt: skip
    for key in ("bytes_up", "bytes_down"):
        assert [r[key] for r in rounds] == [getattr(r, key) for r in simulated.rounds]


def test_a_killed_server_app_resumes_where_it_stopped(
    federation: Federation, tmp_path: Path, three_rounds: dict
) -> None:
    """The ServerApp process is SIGKILLed mid-run; ``flwr run`` with resume=true on the
    same nodes (which keep their optimizer state in a state-dir) finishes the run, and
    its rounds equal those of a run that was never interrupted."""
    overrides = dict(RUN, rounds=3, **{"round-timeout": 60, "checkpoint-every": 1})
    cut = tmp_path / "cut"
    run = federation.flwr_run("run-cut", dict(overrides, out=str(cut)))

    def round_one_done() -> bool:
        metrics = cut / "metrics.csv"
        return metrics.exists() and metrics.read_text().count("\n") >= 2

    _wait_for(round_one_done, "round 1", timeout=120)
    federation.kill_server_app()
    run.kill()
    run.wait()
    assert json.loads((cut / "results.json").read_text())["status"] == "running"  # no goodbye
    resumed = federation.flwr_run("run-resumed", dict(overrides, out=str(cut), resume=True))
    _finish(federation, resumed, timeout=180)

    results = _results(cut, federation)
    keys = ("round", "uploads", "bytes_up", "bytes_down", "test_accuracy", "test_loss",
            "train_loss")  # fmt: skip
    assert [{k: r[k] for k in keys} for r in results["rounds"]] == [
        {k: r[k] for k in keys} for r in three_rounds["rounds"]
    ]
    [first, second] = results["sessions"]
    assert first["first_round"] == 1 and 2 <= second["first_round"] <= 3
    assert not (cut / "checkpoint.pt").exists()


def test_round_completes_when_a_supernode_dies(federation: Federation, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # How long the server waits for a round's replies: well above a normal round (~15 s,
    # more on a busy machine) and above the 60 s in which the SuperLink notices a silent
    # node (two missed 30 s heartbeats) and answers for it.
    timeout = 90
    overrides = dict(RUN, rounds=4, out=str(out), **{"round-timeout": timeout})
    run = federation.flwr_run("run-kill", overrides)

    def round_one_done() -> bool:
        metrics = out / "metrics.csv"
        return metrics.exists() and metrics.read_text().count("\n") >= 2

    _wait_for(round_one_done, "round 1", timeout=120)
    federation.kill("node1")  # round 2 has just been sent out
    _finish(federation, run, timeout=300)

    results = _results(out, federation)
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert rounds[0]["uploads"] == 2
    assert [r["uploads"] for r in rounds[1:]] == [1, 1, 1]  # the survivor carries on
    assert all(r["test_accuracy"] is not None for r in rounds)
    dead = federation.node_ids["node1"]
    [dropped] = results["rejections"]  # only the dead node, only in the round it died in
    assert (dropped["round"], dropped["client"]) == (2, 1)  # named by the partition it held
    assert f"node {dead} failed" in dropped["reason"], dropped["reason"]
    assert "Node Unavailable" in dropped["reason"], dropped["reason"]
    assert [r["rejected"] for r in rounds] == [0, 1, 0, 0]
