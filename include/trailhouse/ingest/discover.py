"""Find the new delivery files of an interval: remembered streams listed once each (or the
notification inbox), minus the ledger."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.ingest.layout import KIND_LOG, KINDS, day_prefix, is_account_folder, is_org_folder, parse_key
from trailhouse.ingest.queue import drain
from trailhouse.ingest.source import ObjectInfo, Source

QUARANTINED = "quarantined"
# A key whose transform failed in an earlier run: new again, wherever its day folder is.
PENDING = "pending"


class LayoutError(RuntimeError):
    """The bucket does not hold CloudTrail's layout where the MAV says; the message says where to look."""


@dataclass
class Discovery:
    """What listing found: the new objects to load, the digests and insight files routed
    elsewhere with their kind, and the counts a run reports.
    """
    new: list[ObjectInfo] = field(default_factory=list)
    routed: list[tuple[ObjectInfo, str]] = field(default_factory=list)
    found: int = 0
    skipped: int = 0
    ignored: int = 0
    list_calls: int = 0
    # streams listed, and whether discovery scanned the folders (else they were remembered)
    streams: int = 0
    scanned: bool = False
    # notification mode: messages read, SQS calls made, and whether the inbox replaced listing
    queue_messages: int = 0
    queue_calls: int = 0
    from_queue: bool = False
    # keys left pending by earlier runs (a failed transform) taken again from the ledger
    pending: int = 0
    accounts: list[str] = field(default_factory=list)
    layouts: list[str] = field(default_factory=list)


def account_folders(source: Source, mav: Mav) -> dict[str, str]:
    """{account id: its folder} for both layouts (with and without the o-<org> folder)."""
    base = f"{mav.prefix}AWSLogs/"
    found: dict[str, str] = {}
    for folder in source.list_folders(base):
        name = folder[len(base) : -1]
        if is_account_folder(name):
            found[name] = folder
        elif is_org_folder(name):
            for sub in source.list_folders(folder):
                account = sub[len(folder) : -1]
                if is_account_folder(account):
                    found[account] = sub
    if not found:
        top = [f.rstrip("/") for f in source.list_folders(mav.prefix)][:10]
        raise LayoutError(
            f"no CloudTrail account folders under {source.describe()}/{base}; the top-level folders "
            f"there are {top or 'none'}. Set the MAV's prefix to the part of the key before 'AWSLogs/' "
            f"(`trailhouse mav add {mav.name} --prefix ...`)."
        )
    if mav.accounts:
        missing = sorted(set(mav.accounts) - set(found))
        found = {a: f for a, f in found.items() if a in mav.accounts}
        if not found:
            raise LayoutError(
                f"none of the MAV's accounts {missing} has a folder under {source.describe()}/{base}"
            )
    return dict(sorted(found.items()))


def days_between(start: datetime, end: datetime) -> list[date]:
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class Stream:
    """One account x kind x region folder, e.g. ``AWSLogs/o-abc/111122223333/CloudTrail/us-east-1/``.

    `since` is set on a stream the daily scan found for the first time: the previous scan's
    time, from which runs list it until the next scan.
    """
    prefix: str
    base: str
    account: str
    kind: str
    region: str
    since: datetime | None = None

    def day_folder(self, day: date) -> str:
        return day_prefix(self.base, self.kind, self.region, day)

    def as_row(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "base": self.base, "account": self.account, "kind": self.kind,
                "region": self.region, "since": self.since}


def scan_streams(source: Source, mav: Mav, threads: int = 16) -> list[Stream]:
    """Every stream of the MAV, by LIST with delimiter: AWSLogs/, organisation, kind and region folders."""
    folders = account_folders(source, mav)

    def streams(item: tuple[str, str]) -> list[Stream]:
        account, folder = item
        out = []
        for kind_folder in source.list_folders(folder):
            kind = kind_folder[len(folder) : -1]
            if kind in KINDS:
                out += [Stream(r, folder, account, kind, r[len(kind_folder) : -1]) for r in source.list_folders(kind_folder)]
        return out

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [s for group in pool.map(streams, folders.items()) for s in group]


def _scope(source: Source, mav: Mav) -> str:
    """What a remembered scan is valid for: the source, the prefix and the accounts filter."""
    return f"{source.describe()}|{mav.prefix}|{','.join(mav.accounts)}"


def known_streams(source: Source, eng: Any, mav: Mav, now: datetime, threads: int = 16) -> tuple[list[Stream], bool]:
    """The MAV's streams and whether they were scanned now (else remembered).

    A full scan runs when nothing is remembered for the MAV's current scope or the last scan
    was on an earlier UTC day than `now`. A stream it finds for the first time keeps the
    previous scan's time as `since`, so its files from before the run's look-back are found.
    """
    scope = _scope(source, mav)
    last = appdb.last_scan(eng, mav.name)
    remembered = [Stream(**r) for r in appdb.remembered_streams(eng, mav.name)] if last and last[0] == scope else []
    if last is not None and remembered and last[1].date() >= now.date():
        return remembered, False
    known = {s.prefix for s in remembered}
    since = last[1] if remembered and last is not None else None
    found = [s if s.prefix in known else replace(s, since=since) for s in scan_streams(source, mav, threads)]
    appdb.remember_streams(eng, mav.name, scope, now, (s.as_row() for s in found))
    return found, True


def list_stream(source: Source, stream: Stream, first: date, last: date) -> list[ObjectInfo]:
    """The stream's objects in its day folders from `first` to `last`, in one LIST (per 1,000 keys).

    StartAfter skips the older history; paging stops at the first key after `last`'s folder.
    Whole day folders: a file delivered late into the first day of the window is found.
    """
    start_after = stream.day_folder(first)
    stop = stream.day_folder(last + timedelta(days=1))
    return source.list_objects(stream.prefix, start_after=start_after, stop_at=stop)


def discover(
    source: Source,
    eng: Any,
    mav: Mav,
    start: datetime,
    end: datetime,
    *,
    threads: int = 16,
    lookback_hours: int | None = None,
    now: datetime | None = None,
    queue: Any = None,
) -> Discovery:
    """New objects delivered before `end` in the day folders of [start - look-back, end).

    The streams (account x kind x region folders) come from the MAV's memory, re-scanned at
    most once per UTC day (`known_streams`). Each stream costs one LIST (per 1,000 keys)
    for all the window's day folders, whatever the bucket's history.
    The ledger, not a marker of the last loaded key, decides what is new, so a file
    delivered late with an older name than files already loaded is still found.

    With `queue` (an SQS client for the MAV's `queue_url`) the queue is drained into the
    inbox first; a run that did not scan and whose interval ends within the look-back of
    now then takes its files from the inbox instead of listing (`from_inbox`). The day's
    scanning run, and runs of older intervals (backfills), list as above: the safety net.
    """
    calls_before = source.list_calls
    result = Discovery()
    now = now or appdb.now()
    streams, result.scanned = known_streams(source, eng, mav, now, threads)
    result.streams = len(streams)
    bases = {s.account: s.base for s in streams}
    result.accounts = sorted(bases)
    result.layouts = sorted({"organization" if "/o-" in f"/{b}" else "account" for b in bases.values()})
    lookback = mav.lookback_hours if lookback_hours is None else lookback_hours
    window_start = start - timedelta(hours=lookback)
    if queue is not None:
        read = drain(queue, eng, mav)
        result.queue_messages, result.queue_calls = read.messages, read.calls
        if not result.scanned and end > now - timedelta(hours=lookback):
            result.from_queue = True
            from_inbox(source, eng, mav, end, result)
            _take_pending(eng, mav, end, result)
            result.list_calls = source.list_calls - calls_before
            return result

    last_day = (end - timedelta(microseconds=1)).date()

    def listing(stream: Stream) -> list[ObjectInfo]:
        since = min(window_start, stream.since) if stream.since else window_start
        return list_stream(source, stream, since.date(), last_day)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        listings = list(pool.map(listing, streams))

    for stream, objects in zip(streams, listings, strict=True):
        _classify_listing(eng, mav, stream, objects, end, result)
    _take_pending(eng, mav, end, result)
    result.list_calls = source.list_calls - calls_before
    return result


def _take_pending(eng: Any, mav: Mav, end: datetime, result: Discovery) -> None:
    """Add the keys earlier runs left pending that the listing did not bring (their day folder
    is out of the window now): a file whose transform failed is not lost when it ages out."""
    listed = {o.key for o in result.new}
    for obj in (ObjectInfo(*row) for row in appdb.pending_objects(eng, mav.name)):
        parsed = parse_key(obj.key)
        if obj.key in listed or (parsed is not None and parsed.delivered_at is not None and parsed.delivered_at >= end):
            continue
        result.new.append(obj)
        result.found += 1
        result.pending += 1


def from_inbox(source: Source, eng: Any, mav: Mav, end: datetime, result: Discovery) -> None:
    """Classify the MAV's inbox keys as a listing would, dropping those the ledger already holds.

    Keys from S3 event notifications carry their ETag and size; CloudTrail's notifications do
    not, so their day folders are listed from just before their first key to their last.
    """
    rows = appdb.inbox(eng, mav.name)
    ledger = appdb.ledger_entries(eng, mav.name, [r["key"] for r in rows])
    done = [r["key"] for r in rows if _settled(ledger.get(r["key"]), r["etag"])]
    pending = [r for r in rows if r["key"] not in set(done)]
    objects = [ObjectInfo(r["key"], r["etag"], int(r["size"])) for r in pending if r["etag"] and r["size"] is not None]
    by_folder: dict[str, list[str]] = {}
    for r in pending:
        if not (r["etag"] and r["size"] is not None):
            by_folder.setdefault(r["key"].rsplit("/", 1)[0] + "/", []).append(r["key"])
    gone = []
    for folder, keys in by_folder.items():
        wanted = set(keys)
        listed = [o for o in source.list_objects(folder, start_after=min(keys)[:-1], stop_at=max(keys) + "\0")
                  if o.key in wanted]
        objects += listed
        gone += sorted(wanted - {o.key for o in listed})  # deleted from the bucket since
    appdb.inbox_drop(eng, mav.name, done + gone)
    for obj in sorted(objects, key=lambda o: o.key):
        _classify(obj, ledger, end, result)


def _settled(seen: tuple[str, str] | None, etag: str | None) -> bool:
    """Whether a ledger entry settles an inbox key (a quarantined one only for the same content,
    a pending one never)."""
    return seen is not None and seen[1] != PENDING and (seen[1] != QUARANTINED or etag is None or seen[0] == etag)


def _classify_listing(eng: Any, mav: Mav, stream: Stream, objects: list[ObjectInfo], end: datetime,
                      result: Discovery) -> None:
    """Classify a stream's listing against the ledger, one range query per day folder."""
    folder_len = len(stream.prefix) + len("YYYY/MM/DD/")
    by_day: dict[str, list[ObjectInfo]] = {}
    for obj in objects:
        by_day.setdefault(obj.key[:folder_len], []).append(obj)
    for folder, group in by_day.items():
        ledger = appdb.ledgered(eng, mav.name, folder)
        for obj in group:
            _classify(obj, ledger, end, result)


def _classify(obj: ObjectInfo, ledger: dict[str, tuple[str, str]], end: datetime, result: Discovery) -> None:
    parsed = parse_key(obj.key)
    if parsed is None or not parsed.name.endswith((".json.gz", ".json")):
        result.ignored += 1
        return
    delivered = parsed.delivered_at
    if delivered is not None and delivered >= end:
        return  # belongs to a later interval: that run loads it
    seen = ledger.get(obj.key)
    # A quarantined key is tried again once its content changes (a fixed re-upload); a
    # pending one (its transform failed) always.
    if seen is not None and seen[1] != PENDING and (seen[1] != QUARANTINED or seen[0] == obj.etag):
        if parsed.kind == KIND_LOG:
            result.found += 1
            result.skipped += 1
        return
    if parsed.kind == KIND_LOG:
        result.found += 1
        result.new.append(obj)
    else:
        result.routed.append((obj, parsed.kind))


def make_batches(objects: Iterable[ObjectInfo], batch_bytes: int, max_files: int = 1000) -> list[list[ObjectInfo]]:
    """Group keys into batches of about `batch_bytes` of compressed data."""
    batches: list[list[ObjectInfo]] = []
    current: list[ObjectInfo] = []
    size = 0
    for obj in sorted(objects, key=lambda o: o.key):
        if current and (size + obj.size > batch_bytes or len(current) >= max_files):
            batches.append(current)
            current, size = [], 0
        current.append(obj)
        size += obj.size
    if current:
        batches.append(current)
    return batches
