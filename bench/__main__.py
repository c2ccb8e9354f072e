"""`make bench BENCH_ARGS="..."`: the library sections (ingest, baselines, discovery, queries, rules) and the product's commands (bench/product.py) on one set of synthetic files."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import backfill_bench, baselines, data, discovery, ingest, product, profiling, queries, rules_bench, web_load
from bench.common import MIB, Sheet, isolated, markdown, render

SECTIONS = ("ingest", "duckdb", "floor", "backfill", "discovery", "moto", "queries", "web", "rules", "profile",
            "run", "cli_backfill", "concurrent", "scheduled", "s3latency")
PRODUCT = ("run", "cli_backfill", "concurrent", "scheduled", "s3latency")  # bench/product.py: the commands users run
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    versions = {}
    for pkg in ("polars", "duckdb", "deltalake", "pyarrow", "msgspec", "isal", "psutil", "moto"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"nproc": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions}


def git_state() -> dict[str, Any]:
    """The commit and the uncommitted files the run measured (others may be editing include/ meanwhile)."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    code = hashlib.sha256()
    for path in sorted((root / "include" / "trailhouse").rglob("*.py")):
        code.update(path.read_bytes())
    return {"head": git("rev-parse", "HEAD"), "dirty": git("status", "--porcelain", "include").splitlines(),
            "include_sha256": code.hexdigest()[:16]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000, help="events in the synthetic files (default 1,000,000; at least ~32,000: one file per account, region and day)")
    p.add_argument("--query-events", type=int, default=10_000_000,
                   help="events in the query warehouse (default 10,000,000; built from the ingested table)")
    p.add_argument("--skip", default="", help=f"comma-separated sections to skip: {', '.join(SECTIONS)} "
                                              "('baselines' = duckdb,floor; 'product' = run,cli_backfill,scheduled,"
                                              "s3latency; 'library' = every section but those)")
    p.add_argument("--backfill-events", type=int, default=200_000,
                   help="events in the `trailhouse backfill` bucket (default 200,000)")
    p.add_argument("--backfill-days", type=int, default=5, help="delivery days of that bucket (default 5)")
    p.add_argument("--latency-events", type=int, default=100_000,
                   help="events of the files put on moto's S3 server for the latency section (default 100,000)")
    p.add_argument("--latencies", default="0,20,50", help="added ms per S3 request, first = the baseline (default 0,20,50)")
    p.add_argument("--discovery-accounts", default="20,200",
                   help="comma-separated account counts of the moto discovery scale section, each at 4 and 17 regions "
                        "(default 20,200; 1000 adds ~15 min)")
    p.add_argument("--web-clients", type=int, default=20, help="concurrent users of the web load section (default 20)")
    p.add_argument("--web-seconds", type=float, default=60, help="how long the web load section drives the API (default 60)")
    p.add_argument("--profile-events", type=int, default=50_000, help="events in the profiled batch (default 50,000)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--wait-for-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each section wait up to SECONDS for the CPUs to be < 25%% busy (shared machines)")
    p.add_argument("--out", type=Path, default=None, help="results JSON path (default bench/results/<timestamp>.json)")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if "baselines" in skip:
        skip |= {"duckdb", "floor"}
    if "product" in skip:
        skip |= set(PRODUCT)
    if "library" in skip:
        skip |= set(SECTIONS) - set(PRODUCT)
    unknown = skip - set(SECTIONS) - {"baselines", "product", "library"}
    if unknown:
        p.error(f"unknown section(s) in --skip: {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    args.skip_set = skip
    try:
        args.latency_ms = [int(x) for x in args.latencies.split(",") if x.strip()]
    except ValueError:
        p.error(f"--latencies takes comma-separated whole milliseconds (e.g. 0,20,50), not {args.latencies!r}")
    if not args.latency_ms or args.latency_ms[0] != 0:
        p.error("--latencies must start with 0: the no-latency figure the others are compared to")
    return args


LOAD: list[dict[str, Any]] = []


WAIT_FOR_QUIET = 0.0


def wait_for_quiet(max_seconds: float) -> float:
    """Wait (up to max_seconds) until other processes leave the CPUs mostly idle; returns the busy % seen last."""
    import psutil

    deadline = time.monotonic() + max_seconds
    while True:
        busy = psutil.cpu_percent(interval=2.0)
        if busy < 25 or time.monotonic() >= deadline:
            return busy
        time.sleep(3)


def step(msg: str) -> None:
    busy = None
    if WAIT_FOR_QUIET > 0 and msg != "done":
        t0 = time.monotonic()
        busy = wait_for_quiet(WAIT_FOR_QUIET)
        print(f"[bench] waited {time.monotonic() - t0:.0f} s for quiet CPUs ({busy:.0f}% busy)", file=sys.stderr)
    load1 = os.getloadavg()[0]
    LOAD.append({"at": time.strftime("%H:%M:%S"), "step": msg, "load1": load1, "cpu_busy_pct": busy})
    print(f"[bench {time.strftime('%H:%M:%S')}] (load {load1:.1f}) {msg}", file=sys.stderr, flush=True)


def targets(sheet: Sheet, got: dict[str, Any]) -> None:
    """The performance targets, each with whether this run meets it."""
    s = "targets"

    def add(name: str, value: Any, unit: str, met: bool | None, note: str) -> None:
        verdict = "n/a" if met is None else ("MET" if met else "NOT MET")
        sheet.add(s, name, value, unit, ratio=verdict, note=note)

    runs = {r.workers: r for r in got.get("ingest", [])}
    two = runs.get(2)
    duck = got.get("baselines", {}).get("duckdb")
    floor = got.get("baselines", {}).get("floor")
    if two and duck:
        ours, theirs = two.events / two.wall_s, duck["rows"] / duck["seconds"]
        add("ingest >= 3x DuckDB events/s (2 workers vs 2 threads)", ours / theirs, "x", ours / theirs >= 3,
            f"end to end {ours:,.0f} vs {theirs:,.0f} events/s; transform-only "
            f"{two.events / two.transform_s / theirs:.2f}x; per CPU-second "
            f"{(two.events / two.cpu_s) / (duck['rows'] / duck['cpu_s']):.2f}x")
    if two and floor:
        floor2 = 2 * floor["records"] / (floor["isal_s"] + floor["msgspec_s"])
        ours = two.events / two.wall_s
        fc = floor["records"] / (floor["isal_cpu_s"] + floor["msgspec_cpu_s"])
        add("ingest within 3x of gunzip+parse floor (2 cores)", floor2 / ours, "x slower than floor",
            floor2 / ours <= 3, f"floor {floor2:,.0f} events/s (2 x 1 core); ours end to end {ours:,.0f}; "
                                f"transform-only {floor2 / (two.events / two.transform_s):.2f}x; per CPU-second "
                                f"{fc / (two.events / two.cpu_s):.2f}x")
    if runs:
        worst = max(r.worker_peak_rss for r in runs.values())
        add("transform worker peak RSS < 1 GiB", worst / MIB, "MiB", worst < 1024 * MIB,
            "biggest transform worker process (VmHWM)")
        commit = max(r.parent_peak_rss for r in runs.values())
        n = max(r.events for r in runs.values())
        add("commit process peak RSS < 1 GiB", commit / MIB, "MiB", commit < 1024 * MIB,
            f"Warehouse.commit of all {n:,} staged rows in one process (here the parent; in Airflow the commit task)")
    disc = got.get("discovery")
    if disc:
        for store in sorted({r["store"] for r in disc}):
            rows = [r for r in disc if r["store"] == store]
            calls_flat = len({r["list_calls"] for r in rows}) == 1
            growth = rows[-1]["seconds"] / rows[0]["seconds"]
            per_call = rows[-1]["one_list_s"] / rows[0]["one_list_s"]
            # Flat = the same LIST calls, and any growth in time explained by the store's
            # per-call latency (moto scans its whole bucket on every LIST; S3 does not).
            flat = calls_flat and (growth <= 1.5 or growth / per_call <= 1.5)
            add(f"discovery flat in history ({store})", growth, f"x time {rows[-1]['days']}d vs {rows[0]['days']}d",
                flat,
                f"LIST calls {', '.join(str(r['list_calls']) for r in rows)} for {', '.join(str(r['days']) for r in rows)} "
                f"days; one LIST {per_call:.2f}x slower at {rows[-1]['days']}d; flat = same LIST calls and time "
                f"growth <= 1.5x beyond the store's per-call latency")
    product.targets(add, got.get("product", {}), got.get("baselines", {}).get("duckdb"))
    w = got.get("web")
    if w:
        n = w.get("warehouse_events") or 0
        judged = n >= 10_000_000
        add(f"web: 0 errors under {w['clients']} clients on {n / 1e6:g}M events", w["errors"], "errors",
            w["errors"] == 0 if judged else None,
            f"{w['requests']:,} requests, {w['requests_per_s']:.1f}/s, p50 {w['p50_s']:.3f} s, p95 {w['p95_s']:.3f} s"
            + ("" if judged else "; warehouse < 10M events: not judged"))
        add("web: API server peak RSS < 1 GiB under load", w["server_peak_rss_mib"], "MiB",
            w["server_peak_rss_mib"] < 1024 if judged else None, "VmHWM of the process serving the app")
    q = got.get("queries")
    if q:
        n = q["warehouse"]["events"]
        worst = max(max(v["duckdb_s"], v["polars_s"]) for v in q["queries"].values())
        best_each = max(min(v["duckdb_s"], v["polars_s"]) for v in q["queries"].values())
        slow = [k.split(".")[0] for k, v in q["queries"].items() if max(v["duckdb_s"], v["polars_s"]) >= 1]
        add(f"queries < 1 s on {n / 1e6:g}M events (both engines)", worst, "s (slowest)",
            worst < 1 and n >= 10_000_000 if n >= 10_000_000 else None,
            f"slowest query/engine {worst:.2f} s; with the faster engine per query {best_each:.2f} s; "
            f"over 1 s: {', '.join(slow) or 'none'}" + ("" if n >= 10_000_000 else "; table < 10M events: not judged"))


def ingest_section(ds: data.Dataset, work: Path, sheet: Sheet, got: dict[str, Any]) -> str:
    """The library ingest with 1 and 2 workers; returns the 1-worker run's warehouse."""
    runs = []
    for workers in (1, 2):
        step(f"ingest with {workers} worker process(es)")
        runs.append(ingest.run(ds, work, workers))
    ingest.report(ds, runs, sheet)
    got["ingest"] = runs
    for r in runs[1:]:
        shutil.rmtree(r.warehouse, ignore_errors=True)
    for tag in ("1w", "2w"):
        shutil.rmtree(work / f"staging-{tag}", ignore_errors=True)
    return str(runs[0].warehouse)


def ratios(sheet: Sheet, got: dict[str, Any]) -> None:
    """The ingest runs against DuckDB and the gunzip + parse floor."""
    s = "ratios"
    duck = got["baselines"].get("duckdb")
    floor = got["baselines"].get("floor")
    for r in got["ingest"]:
        w = f"{r.workers}w"
        for label, eps in (("end to end", r.events / r.wall_s), ("transform-only", r.events / r.transform_s)):
            if duck:
                d = duck["rows"] / duck["seconds"]
                sheet.add(s, f"ours {w} {label} / duckdb (2 threads)", eps / d, "x")
                if label == "end to end":
                    sheet.add(s, f"ours {w} / duckdb, events per CPU-second", (r.events / r.cpu_s)
                              / (duck["rows"] / duck["cpu_s"]), "x", note="little affected by other load")
            if floor:
                f1 = floor["records"] / (floor["isal_s"] + floor["msgspec_s"])
                sheet.add(s, f"ours {w} {label} / floor ({r.workers} core{'s' if r.workers > 1 else ''})",
                          eps / (f1 * r.workers), "x", note="1.0 = as fast as gunzip + msgspec decode")
                if label == "end to end":
                    fc = floor["records"] / (floor["isal_cpu_s"] + floor["msgspec_cpu_s"])
                    sheet.add(s, f"ours {w} / floor, events per CPU-second", (r.events / r.cpu_s) / fc, "x",
                              note="little affected by other load")


def history_sections(ds: data.Dataset, work: Path, sheet: Sheet, got: dict[str, Any], skip: set[str],
                     accounts: tuple[int, ...]) -> None:
    """Library backfill, discovery as the history grows, and discovery at `accounts` x 4 / 17 regions."""
    if "backfill" not in skip:
        step("backfill: every delivery day of the bucket, 2 workers")
        got["backfill"] = backfill_bench.run(ds, work, sheet)

    if "discovery" not in skip or "moto" not in skip:
        results = []
        if "discovery" not in skip:
            step("discovery: local bucket, 7 / 30 / 90 days of history")
            results += discovery.run_local(work)
        if "moto" not in skip:
            step("discovery: moto S3 server, 7 / 30 / 90 days of history")
            try:
                results += discovery.run_moto(work)
                step("discovery: moto S3 server, accounts x 4 / 17 regions")
                discovery.run_scale(work, sheet, accounts)
            except Exception as exc:  # moto is optional here: say why and go on
                sheet.add("discovery", "moto S3", None, note=f"skipped: {type(exc).__name__}: {exc}")
        discovery.report(results, sheet)
        got["discovery"] = results


def warehouse_sections(args: argparse.Namespace, ds: data.Dataset, work: Path, sheet: Sheet, got: dict[str, Any],
                       base_uri: str | None) -> None:
    """Queries, rules and the profiled batch over a loaded warehouse."""
    skip = args.skip_set
    if ({"queries", "web", "rules"} - skip) and base_uri is None:
        step("no ingest section: loading the data once (untimed) for queries/rules")
        base_uri = ingest.run(ds, work, 2).warehouse

    if {"queries", "web"} - skip:
        assert base_uri is not None
        step(f"queries: building a {args.query_events:,}-event warehouse")
        q_uri = str(work / "warehouse-queries")
        built, _ = isolated(queries.build, base_uri, q_uri, args.query_events)
        if "queries" not in skip:
            step("queries: running")
            res, rss = isolated(queries.run_queries, q_uri, data.END)
            queries.report(built, res, rss, sheet)
            got["queries"] = {"warehouse": built, **res}
        if "web" not in skip:
            step(f"web: {args.web_clients} clients for {args.web_seconds:.0f} s against the API over that warehouse")
            got["web"] = web_load.run(q_uri, work / "web", clients=args.web_clients, seconds=args.web_seconds)
            web_load.report(got["web"], sheet)
        shutil.rmtree(q_uri, ignore_errors=True)

    if "rules" not in skip:
        assert base_uri is not None
        step("rules: built-in rules over the ingested events")
        res, rss = isolated(rules_bench.evaluate_all, base_uri)
        step("rules: evaluate_step over the loaded run (the evaluate_rules task)")
        rules_bench.report(res, rss, sheet, isolated(rules_bench.evaluate_step_run, base_uri, str(work)))

    if "profile" not in skip:
        step(f"profile: one transform_batch of ~{args.profile_events:,} events under cProfile")
        per_event = ds.uncompressed_bytes / max(1, ds.events)
        objs, size = [], 0
        for path in ds.log_files:
            objs.append((path.relative_to(ds.root).as_posix(), "bench", path.stat().st_size))
            size += data.gzip_isize(path)
            if size >= args.profile_events * per_event:
                break
        res, _ = isolated(profiling.profile_batch, str(ds.root), objs, str(work / "staging-profile"))
        profiling.report(res, sheet)


def product_sections(args: argparse.Namespace, ds: data.Dataset, work: Path, sheet: Sheet, got: dict[str, Any]) -> None:
    """bench/product.py: the `trailhouse` commands, with DuckDB on the same files as the baseline."""
    skip = args.skip_set
    res: dict[str, Any] = {}
    if "run" not in skip:
        if "duckdb" not in got.get("baselines", {}):
            step("baseline for the product run: DuckDB read_json on the same files")
            got.setdefault("baselines", {}).update(baselines.run(ds.log_files, work, ds.events, sheet, {"floor"}))
        step("product: trailhouse mav add / run / run (nothing new) / sql")
        res["run"] = product.run_section(ds, sheet.details["data"]["unique_events"], work, sheet)
        if not args.keep:
            shutil.rmtree(work / "product-home", ignore_errors=True)
    if "cli_backfill" not in skip:
        step(f"product: trailhouse backfill, {args.backfill_days} days, ~{args.backfill_events:,} events")
        res["cli_backfill"] = product.backfill_section(work, sheet, args.backfill_events, args.backfill_days)
        if not args.keep:
            shutil.rmtree(work / "backfill-home", ignore_errors=True)
    if "concurrent" not in skip:
        step(f"product: trailhouse run (hourly) while trailhouse backfill loads {args.backfill_days} days of the same MAV")
        res["concurrent"] = product.concurrent_section(work, sheet, args.backfill_events, args.backfill_days,
                                                       res.get("cli_backfill"))
        if not args.keep:
            shutil.rmtree(work / "concurrent-home", ignore_errors=True)
            shutil.rmtree(work / "concurrent-bucket", ignore_errors=True)
    if "scheduled" not in skip:
        step("product: the DAG under scheduler + LocalExecutor + PostgreSQL")
        res["scheduled"] = product.scheduled_section(ds, work, sheet)
        if not args.keep:
            shutil.rmtree(work / "scheduled-home", ignore_errors=True)
    if "s3latency" not in skip:
        step(f"product: transform from moto S3 through the proxy at +{args.latencies} ms")
        res["s3latency"] = product.latency_section(ds, work, sheet, args.latency_events, args.latency_ms)
    if res:
        got["product"] = res
        sheet.details["product"] = res


def main(argv: list[str] | None = None) -> int:
    global WAIT_FOR_QUIET
    args = parse_args(argv)
    skip = args.skip_set
    WAIT_FOR_QUIET = args.wait_for_quiet
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    base_dir = os.environ.get("TRAILHOUSE_BENCH_DIR")
    if base_dir:
        Path(base_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"trailhouse-bench-{stamp}-", dir=base_dir or "/tmp"))
    sheet = Sheet()
    sheet.details["machine"] = machine()
    sheet.details["args"] = {"events": args.events, "query_events": args.query_events, "skip": sorted(skip),
                             "profile_events": args.profile_events, "backfill_events": args.backfill_events,
                             "backfill_days": args.backfill_days, "latency_events": args.latency_events,
                             "latencies_ms": args.latency_ms}
    sheet.details["work_dir"] = str(work)
    sheet.details["git"] = git_state()
    got: dict[str, Any] = {}
    t_all = time.perf_counter()
    try:
        step(f"work dir {work}; generating ~{args.events:,} events")
        ds = data.build(work, args.events, sheet)

        base_uri = ingest_section(ds, work, sheet, got) if "ingest" not in skip else None

        if {"duckdb", "floor"} - skip:
            step("baselines: DuckDB read_json and gunzip/parse floors")
            got["baselines"] = baselines.run(ds.log_files, work, ds.events, sheet, skip)

        if "ingest" in got and "baselines" in got:
            ratios(sheet, got)

        history_sections(ds, work, sheet, got, skip, tuple(int(a) for a in args.discovery_accounts.split(",")))
        warehouse_sections(args, ds, work, sheet, got, base_uri)

        product_sections(args, ds, work, sheet, got)

        step("done")
        loads = [x["load1"] for x in LOAD]
        sheet.add("machine", "1-min load average at section starts", f"{min(loads):.1f}..{max(loads):.1f}", "",
                  note=f"{os.cpu_count()} CPUs; above ~2 means other processes competed for the cores")
        sheet.details["load"] = LOAD
        targets(sheet, got)
        sheet.details["total_seconds"] = time.perf_counter() - t_all
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    out = args.out or RESULTS / f"{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**sheet.to_dict(), "markdown": markdown(sheet)}, indent=2, default=str) + "\n")
    print(render(sheet))
    prof = sheet.details.get("profile")
    if prof:
        print("\nTop functions of the profiled transform_batch (by own time):")
        for r in prof["top_tottime"]:
            print(f"  {r['tottime']:7.2f} s own  {r['cumtime']:7.2f} s cum  {r['ncalls']:>9,} calls  {r['function']}")
    print(f"\nresults: {out}  (total {sheet.details['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
