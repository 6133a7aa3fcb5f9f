"""Which versions of a model were live, in order: what `trtpipe rollback` returns to, and what retention keeps.

`<repo>/<model>-engine/.trtpipe-history.json` is an append-only list of events (Triton ignores files in a
model directory other than config.pbtxt, and loads only integer-named sub-directories):

    {"action": "publish",  "version": 3, "at": "...", "previous": 2}   a new version went live
    {"action": "activate", "version": 1, "at": "...", "previous": 3}   rollback --to 1
    {"action": "rollback", "version": 2, "at": "...", "previous": 3}   rollback: back to the one live before

Replayed, the events give a stack of live versions: publish and activate push, rollback pops back to the
version it names. So publish 1, publish 2, rollback (-> 1), publish 3, rollback returns to 1, the version
that was live before 3, not to 2, which was retired by the first rollback.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from trtpipe.repo import layout

HISTORY_FILE = ".trtpipe-history.json"
PUSHES = ("publish", "activate")


def history_path(model_dir: Path) -> Path:
    return model_dir / HISTORY_FILE


def read_events(model_dir: Path) -> list[dict]:
    try:
        events = json.loads(history_path(model_dir).read_text())
    except (OSError, ValueError):
        return []
    return events if isinstance(events, list) else []


def record(model_dir: Path, action: str, version: int, previous: int | None) -> None:
    """Append one event; the caller holds the repository's publish lock."""
    event = {"action": action, "version": version, "previous": previous,
             "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    layout.write_atomically(history_path(model_dir), json.dumps(read_events(model_dir) + [event], indent=1) + "\n")


def live_stack(events: list[dict]) -> list[int]:
    """The versions that were live, oldest first; the last is the live one (as far as trtpipe changed it)."""
    stack: list[int] = []
    for event in events:
        version = event.get("version")
        if event.get("action") in PUSHES:
            stack.append(version)
        elif event.get("action") == "rollback":
            while stack and stack[-1] != version:
                stack.pop()
            if not stack:
                stack.append(version)
    return stack


def previous_live(model_dir: Path, live: int, available: list[int]) -> int | None:
    """The version that was live before `live` and is still kept; None if there is none.

    Without a history (a repository published before trtpipe kept one), the newest version below the live one.
    """
    stack = live_stack(read_events(model_dir))
    if not stack:
        older = [v for v in available if v < live]
        return older[-1] if older else None
    if stack[-1] == live:
        stack = stack[:-1]
    for version in reversed(stack):
        if version != live and version in available:
            return version
    return None


def recently_live(model_dir: Path, live: int | None) -> list[int]:
    """Distinct versions in the order they would be rolled back to: the live one first."""
    order = [] if live is None else [live]
    for version in reversed(live_stack(read_events(model_dir))):
        if version not in order:
            order.append(version)
    return order
