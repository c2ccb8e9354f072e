"""bench/product.py's instrument: the memory of a command's whole process tree, its failures reported."""

from __future__ import annotations

import sys
from pathlib import Path

from trailhouse import settings

sys.path.insert(0, str(settings.PROJECT_ROOT))  # bench/ is run from the project root (`python -m bench`)

from bench.product import MIB, measure  # noqa: E402

# A parent that starts a child holding 300 MiB for a while: the child's memory is the tree's.
CHILD = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(1.5)"
PARENT = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}], check=True)"


def test_measure_sees_the_peak_of_a_grandchild_process(tmp_path: Path) -> None:
    m = measure([sys.executable, "-c", PARENT], {"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert m.ok, m.stderr
    assert len(m.procs) >= 2
    child = max(m.procs, key=lambda p: p["peak_rss"])
    assert child["peak_rss"] >= 300 * MIB
    assert "python -c" in child["name"]
    assert m.peak_sum > child["peak_rss"]  # the parent, alive meanwhile, is in the sum


def test_a_failing_command_is_reported_with_its_error(tmp_path: Path) -> None:
    m = measure([sys.executable, "-c", "raise SystemExit('no such MAV: nope')"], {"PATH": "/usr/bin:/bin"},
                cwd=tmp_path)
    assert not m.ok
    assert "exited 1" in m.failure() and "no such MAV: nope" in m.failure()
