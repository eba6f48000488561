"""lpfl keeps the memory of freed tensors in the process, so new ones stop page-faulting."""

import json
import os
import platform
import subprocess
import sys

import pytest

from lpfl.engine import host_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A step's worth of temporaries freed together, as the vectorized engine makes them; the
# page faults of the second pass are counted. Each pass frees 128 MiB at once, more than
# glibc's self-adjusting trim threshold ever reaches (64 MiB), so untuned glibc always
# hands it back.
CHURN = """
import json, resource
import torch
from lpfl.engine.host_memory import keep_freed_memory
tuned = keep_freed_memory()
def churn():
    for _ in range(5):
        temporaries = [torch.empty(4 << 20).fill_(1.0) for _ in range(8)]
        del temporaries
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _churn(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != host_memory.OPT_OUT} | env
    out = subprocess.run(
        [sys.executable, "-c", CHURN], env=environ, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the knobs are glibc's; elsewhere malloc is left alone")
def test_freed_tensors_no_longer_come_back_as_fresh_pages():
    default = _churn(**{host_memory.OPT_OUT: "default"})
    tuned = _churn()
    assert not default["tuned"] and tuned["tuned"]
    # 40 tensors of 16 MiB: about 4,000 faults each while glibc hands the memory back.
    assert default["faults"] > 100_000, default
    assert tuned["faults"] < default["faults"] / 20, (default, tuned)


def test_without_glibc_nothing_is_touched(monkeypatch):
    def no_library(_name):
        raise OSError("no C library here")

    monkeypatch.setattr(host_memory.ctypes, "CDLL", no_library)
    assert host_memory._tune() is False
