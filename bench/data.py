"""Section 1: the synthetic delivery files every other section reads."""

from __future__ import annotations

import datetime
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import MB, Sheet
from trailhouse.dev.synth.files import write_to_dir
from trailhouse.dev.synth.world import SynthSpec
from trailhouse.ingest.layout import KIND_LOG, parse_key

# A fixed last day keeps the files byte-identical between runs (synth is deterministic).
END = datetime.date(2026, 11, 25)
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2")
ACCOUNTS = 20
DAYS = 2
EVENTS_PER_FILE = 200  # mean; synth draws 100..300 per file, like a busy account's 5-minute files


@dataclass
class Dataset:
    root: Path
    spec: SynthSpec
    log_files: list[Path]
    events: int
    compressed_bytes: int
    uncompressed_bytes: int
    seconds: float


def spec_for(events: int) -> SynthSpec:
    files_per_region_day = max(1, round(events / (ACCOUNTS * len(REGIONS) * DAYS * EVENTS_PER_FILE)))
    return SynthSpec(
        seed=7,
        accounts=ACCOUNTS,
        regions=REGIONS,
        days=DAYS,
        end=END,
        events_per_file=EVENTS_PER_FILE,
        files_per_region_day=files_per_region_day,
        bucket="trailhouse-bench",
    )


def gzip_isize(path: Path) -> int:
    """The uncompressed size from the gzip trailer (exact for files < 4 GiB)."""
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def log_files(root: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            parsed = parse_key(path.relative_to(root).as_posix())
            if parsed is not None and parsed.kind == KIND_LOG:
                out.append(path)
    return sorted(out)


def build(work: Path, events: int, sheet: Sheet) -> Dataset:
    root = work / "bucket"
    spec = spec_for(events)
    t0 = time.perf_counter()
    summary = write_to_dir(spec, root)
    seconds = time.perf_counter() - t0
    logs = log_files(root)
    compressed = sum(p.stat().st_size for p in logs)
    uncompressed = sum(gzip_isize(p) for p in logs)
    ds = Dataset(root, spec, logs, summary.events, compressed, uncompressed, seconds)
    s = "data"
    sheet.add(s, "events (log records)", summary.events, "events",
              note=f"{spec.accounts} accounts x {len(spec.regions)} regions x {spec.days} days, "
                   f"{spec.files_per_region_day} files/region/day, ~{spec.events_per_file} events/file")
    sheet.add(s, "log files", len(logs), "files", note=f"+{summary.digest_files} digest, {summary.insight_files} insight files")
    sheet.add(s, "compressed size", compressed / MB, "MB", note="synth gzips with ISA-L level 2")
    sheet.add(s, "uncompressed JSON", uncompressed / MB, "MB")
    sheet.add(s, "mean events per file", summary.events / max(1, len(logs)), "events")
    sheet.add(s, "generation time", seconds, "s", note="synth.files.write_to_dir, not part of any figure below")
    sheet.details["data"] = {
        "root": str(root),
        "spec": {k: (str(v) if isinstance(v, datetime.date) else v) for k, v in spec.__dict__.items()},
        "objects": summary.objects,
        "log_files": len(logs),
        "events": summary.events,
        "unique_events": summary.unique_events,
        "compressed_bytes": compressed,
        "uncompressed_bytes": uncompressed,
    }
    return ds
