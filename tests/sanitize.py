"""Run tests against trailhouse.ingest._fastjson built with AddressSanitizer and UBSan (`make sanitize`).

The C column builder reads untrusted bytes; this builds it with -fsanitize=address,undefined
into a temporary folder, loads that build as trailhouse.ingest._fastjson, and runs pytest (the
arguments) with any memory error or undefined behaviour aborting the run. The Makefile sets
LD_PRELOAD to the sanitizer runtimes, which must be loaded before Python starts.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    out = Path(tempfile.mkdtemp()) / "_fastjson.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-g", "-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                    "-std=c11", f"-I{sysconfig.get_paths()['include']}", str(ROOT / "include/trailhouse/ingest/_fastjson.c"),
                    "-o", str(out)], check=True)
    spec = importlib.util.spec_from_file_location("trailhouse.ingest._fastjson", out)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["trailhouse.ingest._fastjson"] = module  # records imports this one, not the -O3 build
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import pytest

    # sys-level capture only: the sanitizers write their report to file descriptor 2
    return pytest.main(["-p", "no:cacheprovider", "--capture=sys", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
