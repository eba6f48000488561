"""The test suite's own plumbing: a terminated run still tears its fixtures down."""

import signal
import subprocess
import sys
import time
from pathlib import Path

SLOW_TEST = """
import time
from pathlib import Path

import pytest


@pytest.fixture
def resource():
    yield
    Path({done!r}).write_text("torn down")


def test_waits(resource):
    Path({started!r}).write_text("started")
    time.sleep(60)
"""


def test_sigterm_tears_fixtures_down(tmp_path: Path) -> None:
    started, done = tmp_path / "started", tmp_path / "done"
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    (tmp_path / "test_slow.py").write_text(SLOW_TEST.format(started=str(started), done=str(done)))
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.1)
    assert started.exists(), run.communicate()[0].decode()[-2000:]
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=30)
    assert done.read_text() == "torn down"
