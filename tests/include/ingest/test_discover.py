"""Incremental discovery: layouts, look-back, the ledger, late files, and LIST calls flat in history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.dev.synth.files import generate, late_file, write_to_dir, write_to_s3
from trailhouse.dev.synth.world import SynthSpec, account_ids
from trailhouse.ingest.discover import LayoutError, discover, make_batches
from trailhouse.ingest.layout import KIND_LOG, parse_key
from trailhouse.ingest.source import LocalSource, ObjectInfo, S3Source

END_DAY = date(2026, 11, 20)
# The run of the last hour of END_DAY: its window with 24 h look-back covers two day folders.
START = datetime(2026, 11, 20, 23, tzinfo=UTC)
END = START + timedelta(hours=1)


def small_spec(**kw: object) -> SynthSpec:
    base = dict(seed=3, accounts=3, days=2, end=END_DAY, files_per_region_day=3, events_per_file=10,
                regions=("us-east-1", "eu-west-1"))
    base.update(kw)
    return SynthSpec(**base)  # type: ignore[arg-type]


def log_keys_in_window(spec: SynthSpec, mav: Mav) -> set[str]:
    first = (START - timedelta(hours=mav.lookback_hours)).date()
    keys = set()
    for key, _ in generate(spec):
        p = parse_key(key)
        assert p is not None
        if p.kind == KIND_LOG and p.day >= first and p.delivered_at is not None and p.delivered_at < END:
            keys.add(key)
    return keys


@pytest.fixture
def eng(tmp_path: Path):  # noqa: ANN201
    return appdb.engine(f"sqlite:///{tmp_path / 'app.db'}")


def test_finds_every_log_file_of_both_layouts_and_routes_digests(tmp_path: Path, eng) -> None:  # noqa: ANN001
    spec = small_spec()
    write_to_dir(spec, tmp_path / "bucket")
    mav = Mav(name="t", path=str(tmp_path / "bucket"))
    found = discover(LocalSource(tmp_path / "bucket"), eng, mav, START, END)
    assert {o.key for o in found.new} == log_keys_in_window(spec, mav)
    assert found.layouts == ["account", "organization"]
    assert len(found.accounts) == 3
    kinds = {kind for _, kind in found.routed}
    assert kinds <= {"CloudTrail-Digest", "CloudTrail-Insight"} and "CloudTrail-Digest" in kinds
    assert not any("/CloudTrail-Digest/" in o.key or "/CloudTrail-Insight/" in o.key for o in found.new)


def test_ledger_subtracts_and_late_file_with_older_name_is_found(tmp_path: Path, eng) -> None:  # noqa: ANN001
    spec = small_spec()
    root = tmp_path / "bucket"
    write_to_dir(spec, root)
    mav = Mav(name="t", path=str(root))
    first = discover(LocalSource(root), eng, mav, START, END)
    appdb.record_objects(eng, "t", "run1", [
        {"key": o.key, "etag": o.etag, "size": o.size, "kind": KIND_LOG, "status": "loaded", "events": 1, "reason": ""}
        for o in first.new
    ])
    # A file delivered late whose name sorts before files already loaded: a StartAfter
    # marker would skip it; the ledger does not.
    key, body = late_file(spec, datetime(2026, 11, 20, 0, 10, tzinfo=UTC), account_index=1)
    assert key < max(o.key for o in first.new if parse_key(o.key).account == parse_key(key).account)
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes(body)
    second = discover(LocalSource(root), eng, mav, START, END)
    assert [o.key for o in second.new] == [key]
    assert second.skipped == len(first.new)
    assert second.found == len(first.new) + 1


def test_quarantined_key_is_retried_only_when_its_content_changes(tmp_path: Path, eng) -> None:  # noqa: ANN001
    root = tmp_path / "bucket"
    write_to_dir(small_spec(accounts=1), root)
    mav = Mav(name="t", path=str(root))
    objs = discover(LocalSource(root), eng, mav, START, END).new
    bad = objs[0]
    appdb.record_objects(eng, "t", "r1", [
        {"key": o.key, "etag": o.etag, "size": o.size, "kind": KIND_LOG,
         "status": "quarantined" if o is bad else "loaded", "events": 0, "reason": "x"} for o in objs
    ])
    assert discover(LocalSource(root), eng, mav, START, END).new == []
    path = root / bad.key
    path.write_bytes(path.read_bytes() + b"")  # same content, new mtime is not enough on its own
    import os

    os.utime(path, ns=(1, 1))
    again = discover(LocalSource(root), eng, mav, START, END).new
    assert [o.key for o in again] == [bad.key]


def test_a_pending_key_is_new_to_every_run_in_its_window_and_out_of_it(tmp_path: Path, eng) -> None:  # noqa: ANN001
    """A key whose transform failed stays pending: listed again it is new (whatever its ETag), and
    once its day folder has left the look-back the ledger brings it back, once."""
    root = tmp_path / "bucket"
    write_to_dir(small_spec(accounts=1), root)
    mav = Mav(name="t", path=str(root))
    objs = discover(LocalSource(root), eng, mav, START, END).new
    stuck = objs[0]
    appdb.record_objects(eng, "t", "r1", [
        {"key": o.key, "etag": o.etag, "size": o.size, "kind": KIND_LOG,
         "status": "pending" if o is stuck else "loaded", "events": 0, "reason": "x"} for o in objs])
    again = discover(LocalSource(root), eng, mav, START, END)
    assert again.new == [stuck] and again.pending == 0  # listed in the window: new, not added twice
    later = START + timedelta(days=10)
    far = discover(LocalSource(root), eng, mav, later, later + timedelta(hours=1))
    assert stuck in far.new and far.pending == 1
    assert not {o.key for o in far.new} & {o.key for o in objs if o is not stuck}
    # an interval that ends before the key was delivered does not take it
    early = discover(LocalSource(root), eng, mav, START - timedelta(days=5), START - timedelta(days=5, hours=-1))
    assert stuck not in early.new


def test_accounts_filter_and_files_from_the_future_are_left(tmp_path: Path, eng) -> None:  # noqa: ANN001
    spec = small_spec()
    root = tmp_path / "bucket"
    write_to_dir(spec, root)
    accounts = account_ids(spec)
    mav = Mav(name="t", path=str(root), accounts=[accounts[0]])
    early_end = START - timedelta(hours=12)
    found = discover(LocalSource(root), eng, mav, early_end - timedelta(hours=1), early_end)
    assert found.accounts == [accounts[0]]
    assert found.new and all(parse_key(o.key).account == accounts[0] for o in found.new)
    assert all(parse_key(o.key).delivered_at < early_end for o in found.new)


def test_list_calls_do_not_grow_with_history(tmp_path: Path, eng) -> None:  # noqa: ANN001
    mav_short = Mav(name="a", path=str(tmp_path / "short"))
    mav_long = Mav(name="b", path=str(tmp_path / "long"))
    write_to_dir(small_spec(days=2, files_per_region_day=1, digests=False, insights=False), tmp_path / "short")
    write_to_dir(small_spec(days=40, files_per_region_day=1, digests=False, insights=False), tmp_path / "long")
    short = discover(LocalSource(tmp_path / "short"), eng, mav_short, START, END)
    long = discover(LocalSource(tmp_path / "long"), eng, mav_long, START, END)
    assert short.list_calls == long.list_calls
    assert len(short.new) == len(long.new)


def test_s3_discovery_counts_list_calls(s3_admin, tmp_path: Path, eng) -> None:  # noqa: ANN001
    spec = small_spec(accounts=2, prefix="org/trail/")
    s3_admin.create_bucket(Bucket="disc-bucket")
    write_to_s3(spec, s3_admin, "disc-bucket")
    mav = Mav(name="s", bucket="disc-bucket", prefix="org/trail")
    source = S3Source(s3_admin, "disc-bucket")
    found = discover(source, eng, mav, START, END)
    assert {o.key for o in found.new} == log_keys_in_window(spec, mav)
    # The formula of docs/architecture.md for a scanning run: AWSLogs/, the organisation
    # folder, each account's kind folders, each kind's region folders, then one per stream.
    keys = [parse_key(k) for k, _ in generate(spec)]
    kind_folders = len({(p.account, p.kind) for p in keys})
    streams = len({(p.account, p.kind, p.region) for p in keys})
    assert found.scanned and found.streams == streams
    assert found.list_calls == 1 + 1 + 2 + kind_folders + streams
    assert found.list_calls == source.list_calls


def test_wrong_prefix_names_the_folders_it_saw(tmp_path: Path, eng) -> None:  # noqa: ANN001
    root = tmp_path / "bucket"
    write_to_dir(small_spec(accounts=1, prefix="central/"), root)
    with pytest.raises(LayoutError, match=r"central.*prefix"):
        discover(LocalSource(root), eng, Mav(name="t", path=str(root)), START, END)


def test_batches_bound_bytes_and_keep_every_key() -> None:
    objs = [ObjectInfo(f"k{i:03}", "e", 10 + i) for i in range(100)]
    batches = make_batches(objs, batch_bytes=300)
    assert sorted(o.key for b in batches for o in b) == sorted(o.key for o in objs)
    assert all(sum(o.size for o in b) <= 300 or len(b) == 1 for b in batches)


def test_hourly_runs_list_only_remembered_streams_and_the_daily_scan_finds_new_accounts(
        tmp_path: Path, eng) -> None:  # noqa: ANN001
    root = tmp_path / "bucket"
    spec = small_spec(accounts=3, digests=False, insights=False)
    write_to_dir(spec, root)
    mav = Mav(name="t", path=str(root))
    evening = datetime(2026, 11, 20, 23, 5, tzinfo=UTC)
    first = discover(LocalSource(root), eng, mav, START, END, now=evening)
    second = discover(LocalSource(root), eng, mav, START, END, now=evening + timedelta(minutes=30))
    assert first.scanned and not second.scanned
    assert {o.key for o in second.new} == {o.key for o in first.new} == log_keys_in_window(spec, mav)
    assert second.list_calls == second.streams == 3 * 2  # accounts x regions, one kind
    assert first.list_calls > second.list_calls

    # A fourth account starts delivering: the same day's runs do not see it, the next day's scan does,
    # with its files of the day before although a 1-hour look-back does not reach them.
    bigger = small_spec(accounts=4, digests=False, insights=False)
    write_to_dir(bigger, root)
    newcomer = account_ids(bigger)[3]
    assert newcomer not in discover(LocalSource(root), eng, mav, START, END, now=evening + timedelta(minutes=40)).accounts
    next_start = datetime(2026, 11, 21, 1, tzinfo=UTC)
    next_day = discover(LocalSource(root), eng, mav, next_start, next_start + timedelta(hours=1),
                        now=next_start + timedelta(hours=1, minutes=5), lookback_hours=1)
    assert next_day.scanned and newcomer in next_day.accounts
    theirs = {o.key for o in next_day.new if parse_key(o.key).account == newcomer}
    # listed from the day of the previous scan (the 20th) on
    assert theirs == {k for k in log_keys_in_window(bigger, mav)
                      if parse_key(k).account == newcomer and parse_key(k).day == END_DAY}
    assert theirs
    assert not any(parse_key(o.key).account != newcomer and parse_key(o.key).day < next_start.date()
                   for o in next_day.new)


def test_a_changed_accounts_filter_scans_again(tmp_path: Path, eng) -> None:  # noqa: ANN001
    root = tmp_path / "bucket"
    spec = small_spec(digests=False, insights=False)
    write_to_dir(spec, root)
    accounts = account_ids(spec)
    now = datetime(2026, 11, 21, 0, 5, tzinfo=UTC)
    one = discover(LocalSource(root), eng, Mav(name="t", path=str(root), accounts=[accounts[0]]), START, END, now=now)
    two = discover(LocalSource(root), eng, Mav(name="t", path=str(root), accounts=accounts[:2]), START, END, now=now)
    assert one.scanned and two.scanned
    assert one.accounts == [accounts[0]] and two.accounts == sorted(accounts[:2])


def test_list_calls_at_1000_accounts_follow_the_documented_formula(s3_admin, tmp_path: Path, eng) -> None:  # noqa: ANN001
    """docs/architecture.md, "Discovery and its LIST cost": a scanning run makes
    1 + O + A + A*K + S calls, an hourly run S (S = A*K*R streams; one page each here)."""
    regions = ("us-east-1",)
    spec = small_spec(seed=5, accounts=1000, regions=regions, days=1, files_per_region_day=1, events_per_file=1,
                      digests=False, insights=False, duplicates=0)
    s3_admin.create_bucket(Bucket="disc-1000")
    write_to_s3(spec, s3_admin, "disc-1000")
    mav = Mav(name="big", bucket="disc-1000")
    accounts, orgs, kinds = 1000, 1, 1
    streams = accounts * kinds * len(regions)
    now = datetime(2026, 11, 21, 0, 5, tzinfo=UTC)
    scan = discover(S3Source(s3_admin, "disc-1000"), eng, mav, START, END, now=now)
    hourly = discover(S3Source(s3_admin, "disc-1000"), eng, mav, START, END, now=now + timedelta(hours=1))
    assert scan.scanned and not hourly.scanned and scan.streams == hourly.streams == streams
    assert scan.list_calls == 1 + orgs + accounts + accounts * kinds + streams
    assert hourly.list_calls == streams
    assert {o.key for o in hourly.new} == {o.key for o in scan.new} == log_keys_in_window(spec, mav)


def test_the_memory_works_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "bucket"
    spec = small_spec(digests=False, insights=False)
    write_to_dir(spec, root)
    eng = appdb.engine(pg_url)
    mav = Mav(name="t", path=str(root))
    now = datetime(2026, 11, 21, 0, 5, tzinfo=UTC)
    runs = [discover(LocalSource(root), eng, mav, START, END, now=now + timedelta(hours=h)) for h in (0, 1, 24)]
    assert [r.scanned for r in runs] == [True, False, True]
    assert all({o.key for o in r.new} == log_keys_in_window(spec, mav) for r in runs)
