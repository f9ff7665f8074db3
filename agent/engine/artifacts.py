"""Screenshots of failing runs ("artifacts"): where probes save them, their timeline entries, and a
bound on what they take on disk.

A probe that saves a file (the ``browser`` check's screenshot of a failing run) writes it into
``STATE_DIR/artifacts`` (``ProbeContext.artifacts_dir``) and names it in ``Observation.artifact``.
The directory is made (mode 0700) when the runtime is built; when it cannot be, the agent says so
once and runs on, and probes get no directory (they save nothing).

For each result that names one, :meth:`Artifacts.record` adds a timeline entry of kind
``artifact`` ("screenshot of the failing run: NAME") on its check and target, in the incident open
on them if there is one, through the store writer like every other write (never on the event
loop); the status page, the report and ``GET /artifacts/NAME`` (``agent.web.api``) take it from
there. A name that is not a plain file name (``agent.web.snapshot.ARTIFACT_NAME``) or a file that
is not there is logged and not recorded.

The directory is kept to at most :data:`MAX_FILES` files and :data:`MAX_BYTES` in total
(docs/contract.md, Limits): after each new artifact and when a runtime starts, the oldest go first
(by modification time, then name). Only regular files with valid names count and are deleted;
symlinks and anything else there are left alone and never followed. The disk is read on a worker
thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass

from agent.alerting.book import AlertBook
from agent.incidents.report_facts import ARTIFACT, ARTIFACTS_DIR, artifact_text
from agent.incidents.store import Store
from agent.incidents.writer import StoreWriter, Write
from agent.web.snapshot import artifact_name
from checks.base import Result

log = logging.getLogger("firstwatch.artifacts")

MAX_BYTES = 100 * 1024 * 1024  # all artifacts together
MAX_FILES = 1000


def artifacts_path(state_dir: str) -> str:
    """The artifacts directory of the agent keeping its state in ``state_dir`` (absolute)."""
    return os.path.abspath(os.path.join(state_dir, ARTIFACTS_DIR))


@dataclass(frozen=True)
class Stored:
    """One artifact on disk: its name, size in bytes and modification time (ns)."""

    name: str
    size: int
    mtime_ns: int


def stored(directory: str) -> list[Stored]:
    """The artifacts in ``directory``, newest first: regular files with valid names (a symlink is
    never followed, nor counted). An absent directory holds none."""
    found: list[Stored] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if artifact_name(entry.name) is None:
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:  # deleted meanwhile
                    continue
                found.append(Stored(entry.name, st.st_size, st.st_mtime_ns))
    except FileNotFoundError:
        return []
    found.sort(key=lambda s: (s.mtime_ns, s.name), reverse=True)
    return found


def prune(directory: str, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> list[str]:
    """Delete the oldest artifacts in ``directory`` until at most ``max_files`` remain, together
    at most ``max_bytes``; returns the names kept, newest first. The newest that fit are kept:
    once one does not fit, it and every older one go."""
    kept: list[str] = []
    total = 0
    full = False
    for s in stored(directory):
        if not full and len(kept) < max_files and total + s.size <= max_bytes:
            kept.append(s.name)
            total += s.size
            continue
        full = True
        try:
            os.unlink(os.path.join(directory, s.name))  # removes a name, never what a link points to
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("artifacts: cannot delete %s: %s", s.name, exc)
    return kept


def open_incident(book: AlertBook, check: str, target: str) -> tuple[str | None, str | None]:
    """The incident open on ``check`` and ``target`` (or on the check's group) and its severity."""
    group: tuple[str | None, str | None] = (None, None)
    for (name, member, _), alert in book.firing():
        if name != check:
            continue
        if member == target:
            return alert.incident, alert.severity
        if member == "*" and group[0] is None:
            group = (alert.incident, alert.severity)
    return group


def entry_write(result: Result, name: str, incident: str | None, severity: str | None) -> Write:
    """The write adding the ``artifact`` entry for ``result``'s screenshot ``name``."""
    text = artifact_text(name, failed=not result.ok)
    when = result.started_at + result.duration_s  # when the run ended, with its screenshot

    def write(store: Store) -> None:
        store.add_entry(
            ARTIFACT, text, when=when, incident=incident, check=result.check, target=result.target, severity=severity
        )

    return write


class Artifacts:
    """A runtime's artifacts directory (``directory``: None when it could not be made)."""

    def __init__(self, state_dir: str, *, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> None:
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.directory = _make(artifacts_path(state_dir))
        self._lock = threading.Lock()  # one prune at a time (runs finish on several threads)
        self._warned: set[tuple[str, str]] = set()

    def prune(self) -> list[str]:
        """:func:`prune` of the directory, to this runtime's bounds (on a worker thread)."""
        if self.directory is None:
            return []
        with self._lock:
            return prune(self.directory, self.max_bytes, self.max_files)

    async def start(self) -> None:
        """Prune what earlier runs left (a runtime's start)."""
        try:
            await asyncio.to_thread(self.prune)
        except OSError as exc:
            log.error("artifacts: cannot prune %s: %s", self.directory, exc)

    async def record(self, result: Result, book: AlertBook, writer: StoreWriter) -> None:
        """Keep ``result``'s artifact: prune to the bound, then submit its timeline entry (after
        the writes the run's changes made, so a firing's incident is there already)."""
        name = result.artifact
        if name is None or self.directory is None:
            return
        try:
            kept = await asyncio.to_thread(self.prune) if artifact_name(name) is not None else []
        except OSError as exc:
            log.error("artifacts: cannot prune %s: %s", self.directory, exc)
            kept = [name]
        if name not in kept:
            if (result.check, result.target) not in self._warned:  # once per check and target
                self._warned.add((result.check, result.target))
                log.warning(
                    "%s %s: artifact %r not recorded: not a plain .png file name in %s, or gone (over the bound?)",
                    result.check, result.target, name, self.directory,
                )  # fmt: skip
            return
        incident, severity = open_incident(book, result.check, result.target)
        writer.submit(entry_write(result, name, incident, severity))


def _make(path: str) -> str | None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        log.error("artifacts: cannot create %s (%s); probes save no screenshots", path, exc)
        return None
    return path
