"""What a sweep process is measuring right now, kept on disk, so a crash or a hang is attributed, not repeated.

A process that dies inside a measurement (a segfault, ``os._exit``, the OOM killer, a SIGKILL, a hang someone
interrupted) leaves no row; without a word of what it was doing, rerunning the same sweep would crash again at the
same place. So:

- :class:`InFlight` keeps one marker per sweep process, ``RUN/.inflight/<host>.<pid>.json``: the case being
  measured, its (record id, variant) items still without a row, and the phase (``setup <variant>``, ``timing <n>
  variants in rounds``, ``child process``) with the items it concerns. The marker of a new case is written with
  ``fsync`` (file and directory: it survives a power cut); phase changes and finished rows rewrite it atomically
  (a process crash cannot lose them). Every phase is also logged (``attnbench.sweep`` logger, the run's
  ``attnbench.log`` under the CLI). The marker goes when the process finishes normally (or is interrupted).
- :func:`leftovers` reads the markers a dead process of this host left behind: each item without a record is a
  :class:`Suspect`, ``running`` when the phase concerned it. The sweep measures a running suspect once in a child
  process (:mod:`harness.run.isolate`): if it crashes again its row is ``crashed`` (or ``timeout``) and says what
  happened both times, and that variant's remaining cases of the run are measured in child processes too, so
  the run does not die again at the next case; the items that were only waiting are measured as usual.
- :class:`Watchdog` gives ``case_timeout_s`` a meaning without isolation: when a phase runs past its limit (the
  limit for one variant's setup, times the number of variants for the interleaved timing rounds), it writes the
  ``timeout`` row when the hung variant is known, notes the variant in the marker, says what hung, writes
  ``results.csv`` and ends the process with status 124 (a call running in this process cannot be stopped any
  other way). The next run goes on from there and measures that variant in child processes.
  ``faulthandler`` backs it up: should the watchdog thread itself be unable to run (a hang holding the GIL), all
  threads' stacks are printed and the process ends a little later; the marker then names the suspects.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.base.files import pid_alive

__all__ = ["INFLIGHT_DIR", "WATCHDOG_EXIT", "InFlight", "Leftovers", "Suspect", "Watchdog", "leftovers"]

log = logging.getLogger("attnbench.sweep")

#: Folder of the markers inside a run directory.
INFLIGHT_DIR = ".inflight"
#: Exit status of a process the watchdog ended (as ``timeout(1)`` uses).
WATCHDOG_EXIT = 124


def _host() -> str:
    return socket.gethostname().replace(".", "_") or "host"


def _write(path: Path, doc: dict, durable: bool) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        with contextlib.suppress(OSError):  # the rename itself, durable too (not possible on every platform)
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


@dataclass(frozen=True)
class Suspect:
    """An item a dead sweep process had in flight and left without a row.

    Args:
        rid: the record id.
        variant: the variant's name.
        case: the case, as ``Case.describe()`` says it.
        pid: the process that died.
        started: when that process began the case (ISO time).
        phase: what it was doing when it died.
        running: the phase concerned this item (it may be the cause), rather than it waiting its turn.
    """

    rid: str
    variant: str
    case: str
    pid: int
    started: str
    phase: str
    running: bool

    def describe(self) -> str:
        """What happened, in one sentence."""
        where = "while it was running" if self.running else "while it waited its turn"
        return (f"an earlier sweep process (pid {self.pid}, case started {self.started}) ended without a result "
                f"{where} ({self.phase}): a crash, os._exit, a kill or an interrupted hang")


class InFlight:
    """This process's in-flight marker in one run directory.

    Args:
        run_dir: the run directory.
    """

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / INFLIGHT_DIR
        self.path = self.dir / f"{_host()}.{os.getpid()}.json"
        self.doc: dict[str, Any] | None = None

    def begin(self, case: str, items: Sequence[tuple[str, str]], phase: str = "starting",
              current: Sequence[str] | None = None) -> None:
        """A case starts: its items (record id, variant) are in flight; written with fsync.

        Args:
            case: the case's description.
            items: ``(record id, variant)`` of every item about to be measured.
            phase: what starts first.
            current: the record ids the phase concerns (default: none yet).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        self.doc = {"pid": os.getpid(), "host": _host(), "case": case,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "items": {rid: variant for rid, variant in items}, "phase": phase, "current": list(current or [])}
        _write(self.path, self.doc, durable=True)
        log.info("start %s | %s", case, ", ".join(v for _, v in items))

    def phase(self, text: str, current: Sequence[str]) -> None:
        """A phase starts (``setup X``, ``timing 3 variants in rounds``); ``current`` are the ids it concerns."""
        if self.doc is None:
            return
        self.doc["phase"], self.doc["current"] = text, [r for r in current if r in self.doc["items"]]
        _write(self.path, self.doc, durable=False)
        log.info("%s | %s", self.doc["case"], text)

    def done(self, rid: str) -> None:
        """The row of ``rid`` is written: it is no longer in flight."""
        if self.doc is None or rid not in self.doc["items"]:
            return
        del self.doc["items"][rid]
        self.doc["current"] = [r for r in self.doc["current"] if r != rid]
        if self.doc["items"] or self.doc.get("hung"):
            _write(self.path, self.doc, durable=False)
        else:
            self.end()

    def pending(self) -> dict[str, str]:
        """Record id -> variant of the items still in flight."""
        return dict(self.doc["items"]) if self.doc is not None else {}

    def current(self) -> list[str]:
        """The record ids the running phase concerns."""
        return list(self.doc["current"]) if self.doc is not None else []

    def phase_text(self) -> str:
        return str(self.doc["phase"]) if self.doc is not None else ""

    def hung(self, variant: str) -> None:
        """The watchdog found ``variant`` hanging: a rerun measures it in child processes (written with fsync)."""
        if self.doc is None:
            self.doc = {"pid": os.getpid(), "host": _host(), "case": "", "started": "", "items": {}, "phase": "",
                        "current": []}
        self.doc.setdefault("hung", []).append(variant)
        self.dir.mkdir(parents=True, exist_ok=True)
        _write(self.path, self.doc, durable=True)

    def end(self) -> None:
        """Nothing of this process is in flight any more: the marker goes."""
        self.doc = None
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass
class Leftovers:
    """What dead processes of this host left in a run directory.

    Args:
        suspects: record id -> :class:`Suspect`, for items without a row.
        hung: variants the watchdog found hanging (measured in child processes from now on).
        markers: the dead processes' marker files.
    """

    suspects: dict[str, Suspect]
    hung: set[str]
    markers: list[Path]


def leftovers(run_dir: Path, has_record: Callable[[str], bool]) -> Leftovers:
    """The items dead processes of this host left in flight in ``run_dir``, with their marker files.

    Markers of live processes (a concurrent job) and of other hosts (whose processes cannot be checked from
    here) are left alone.

    Args:
        run_dir: the run directory.
        has_record: whether a record id already has its row.

    Returns:
        The :class:`Leftovers`.
    """
    found: dict[str, Suspect] = {}
    dead: list[Path] = []
    hung: set[str] = set()
    folder = Path(run_dir) / INFLIGHT_DIR
    if not folder.is_dir():
        return Leftovers(found, hung, dead)
    host = _host()
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            pid = int(doc["pid"])
            items = {str(r): str(v) for r, v in doc["items"].items()}
            current = {str(r) for r in doc.get("current", [])}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            log.warning("unreadable in-flight marker %s (ignored)", path)
            continue
        if doc.get("host") != host or (pid != os.getpid() and pid_alive(pid)):
            continue
        dead.append(path)
        hung.update(str(v) for v in doc.get("hung", []))
        for rid, variant in items.items():
            if not has_record(rid):
                found[rid] = Suspect(rid=rid, variant=variant, case=str(doc.get("case", "")), pid=pid,
                                     started=str(doc.get("started", "")), phase=str(doc.get("phase", "")),
                                     running=rid in current)
    return Leftovers(found, hung, dead)


class Watchdog:
    """Ends this process when one phase of a measurement runs past its limit (see the module's docstring).

    Args:
        on_expire: called in the watchdog's thread with the phase's tag when its limit passes; it writes what it
            can; the process then ends with :data:`WATCHDOG_EXIT`.
    """

    def __init__(self, on_expire: Callable[[Any, float], None]) -> None:
        self.on_expire = on_expire
        self._cond = threading.Condition()
        self._armed: tuple[float, float, Any] | None = None  # (deadline, limit, tag)
        self._stop = False
        self._thread: threading.Thread | None = None

    def arm(self, limit_s: float, tag: Any) -> None:
        """Start the clock of a phase: ``limit_s`` seconds from now (a new arm replaces the previous one)."""
        with self._cond:
            self._armed = (time.monotonic() + limit_s, limit_s, tag)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="attnbench-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        with contextlib.suppress(Exception):  # the backstop needs a real file descriptor (not under every runner)
            stream = sys.__stderr__
            if stream is not None:
                faulthandler.dump_traceback_later(limit_s + max(30.0, 0.1 * limit_s), exit=True, file=stream)

    def disarm(self) -> None:
        """The phase ended in time."""
        with self._cond:
            self._armed = None
            self._cond.notify()
        with contextlib.suppress(Exception):
            faulthandler.cancel_dump_traceback_later()

    def close(self) -> None:
        """Stop the watchdog's thread."""
        self.disarm()
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (self._armed is None or time.monotonic() < self._armed[0]):
                    wait = None if self._armed is None else max(0.0, self._armed[0] - time.monotonic())
                    self._cond.wait(wait)
                if self._stop:
                    return
                assert self._armed is not None
                _, limit, tag = self._armed
            try:
                self.on_expire(tag, limit)
            finally:
                with contextlib.suppress(Exception):
                    logging.shutdown()
                os._exit(WATCHDOG_EXIT)
