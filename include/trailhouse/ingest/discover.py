"""Find the new delivery files of an interval: delimiter listing, day folders, minus the ledger."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from trailhouse.config import Mav
from trailhouse.db import appdb
from trailhouse.ingest.layout import KIND_LOG, KINDS, day_prefix, is_account_folder, is_org_folder, parse_key
from trailhouse.ingest.source import ObjectInfo, Source

QUARANTINED = "quarantined"


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


def discover(
    source: Source,
    eng: Any,
    mav: Mav,
    start: datetime,
    end: datetime,
    *,
    threads: int = 16,
    lookback_hours: int | None = None,
) -> Discovery:
    """New objects delivered before `end` in the day folders of [start - look-back, end).

    The ledger, not a StartAfter marker, decides what is new, so a file delivered late with
    an older name than files already loaded is still found. LIST calls depend on the
    accounts, regions and days of the window only, never on the bucket's history.
    """
    calls_before = source.list_calls
    result = Discovery()
    folders = account_folders(source, mav)
    result.accounts = list(folders)
    result.layouts = sorted({"organization" if "/o-" in f"/{f}" else "account" for f in folders.values()})
    lookback = mav.lookback_hours if lookback_hours is None else lookback_hours
    days = days_between(start - timedelta(hours=lookback), end)

    def regions(item: tuple[str, str]) -> list[tuple[str, str, str]]:
        _account, folder = item
        out = []
        for kind_folder in source.list_folders(folder):
            kind = kind_folder[len(folder) : -1]
            if kind in KINDS:
                out += [(folder, kind, r[len(kind_folder) : -1]) for r in source.list_folders(kind_folder)]
        return out

    with ThreadPoolExecutor(max_workers=threads) as pool:
        streams = [s for group in pool.map(regions, folders.items()) for s in group]
        prefixes = [day_prefix(folder, kind, region, day) for folder, kind, region in streams for day in days]
        listings = list(pool.map(lambda p: (p, source.list_objects(p)), prefixes))

    for prefix, objects in listings:
        ledger = appdb.ledgered(eng, mav.name, prefix) if objects else {}
        for obj in objects:
            _classify(obj, ledger, end, result)
    result.list_calls = source.list_calls - calls_before
    return result


def _classify(obj: ObjectInfo, ledger: dict[str, tuple[str, str]], end: datetime, result: Discovery) -> None:
    parsed = parse_key(obj.key)
    if parsed is None or not parsed.name.endswith((".json.gz", ".json")):
        result.ignored += 1
        return
    delivered = parsed.delivered_at
    if delivered is not None and delivered >= end:
        return  # belongs to a later interval: that run loads it
    seen = ledger.get(obj.key)
    # A quarantined key is tried again once its content changes (a fixed re-upload).
    if seen is not None and (seen[1] != QUARANTINED or seen[0] == obj.etag):
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
