"""Shared helpers: the result sheet, an RSS sampler, and running a function in a fresh process."""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

MB = 1_000_000
MIB = 1024 * 1024


@dataclass
class Metric:
    section: str
    metric: str
    value: float | int | str | None
    unit: str = ""
    ratio: str = ""  # "2.10x duckdb": value relative to a baseline, when one applies
    note: str = ""


@dataclass
class Sheet:
    """All figures of one run, in the order they were measured."""

    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, metric: str, value: Any, unit: str = "", ratio: str = "", note: str = "") -> None:
        self.metrics.append(Metric(section, metric, value, unit, ratio, note))

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": [asdict(m) for m in self.metrics], "details": self.details}


def fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) >= 0.1:
            return f"{v:.2f}"
        return f"{v:.3f}"
    return str(v)


def render(sheet: Sheet) -> str:
    rows = [("section", "metric", "value", "unit", "ratio to baseline", "note")]
    rows += [(m.section, m.metric, fmt_value(m.value), m.unit, m.ratio, m.note) for m in sheet.metrics]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3].ljust(widths[3]),
                 r[4].ljust(widths[4]), r[5]]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)


def markdown(sheet: Sheet) -> str:
    out = ["| section | metric | value | unit | ratio to baseline | note |", "|---|---|---:|---|---|---|"]
    for m in sheet.metrics:
        out.append(f"| {m.section} | {m.metric} | {fmt_value(m.value)} | {m.unit} | {m.ratio} | {m.note} |")
    return "\n".join(out)


def ratio(value: float, base: float, label: str) -> str:
    if not base:
        return ""
    return f"{value / base:.2f}x {label}"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def self_maxrss_bytes() -> int:
    """Peak RSS of this process's own address space so far.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork and execve, so a
    process spawned by a big parent would report the parent's size as its own peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class RssSampler:
    """Peak RSS of this process and of its biggest child, sampled every `interval` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.parent_peak = 0
        self.child_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._proc = psutil.Process()

    def _sample(self) -> None:
        try:
            self.parent_peak = max(self.parent_peak, self._proc.memory_info().rss)
            for child in self._proc.children(recursive=True):
                try:
                    self.child_peak = max(self.child_peak, child.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: like Airflow workers, each process starts clean (Polars and DuckDB
    # thread pools do not survive a fork reliably).
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _call_measured(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, int]:
    out = fn(*args, **kwargs)
    return out, self_maxrss_bytes()


def isolated(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """fn(*args) in a fresh spawned process: (its result, that process's peak RSS in bytes)."""
    with spawn_pool(1) as pool:
        return pool.submit(_call_measured, fn, args, kwargs).result()


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def lap(self) -> float:
        return time.perf_counter() - self.start
