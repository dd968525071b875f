"""Files written whole or not at all, and whether a process still runs: helpers every layer may use.

A temporary file in the destination's folder moved into place with ``os.replace`` is atomic on POSIX, so a reader
(or a process killed at any instant) sees the old file or the whole new one, never a part.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

__all__ = ["TMP_SUFFIX", "host_tag", "pid_alive", "write_atomic", "write_json_atomic"]

#: Suffix of the temporary files :func:`write_atomic` leaves behind only when killed mid-write.
TMP_SUFFIX = ".tmp"


def host_tag() -> str:
    """This host's name as one file-name part (dots replaced)."""
    return socket.gethostname().replace(".", "_") or "host"


def write_atomic(path: Path, text: str, durable: bool = False) -> None:
    """Write ``text`` to ``path`` so that readers see the old file, or the whole new one, never a part.

    Args:
        path: destination.
        text: content.
        durable: also ``fsync`` (survives power loss; a killed process is covered without it).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{host_tag()}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """:func:`write_atomic` of ``obj`` as indented JSON (NaN allowed)."""
    write_atomic(path, json.dumps(obj, indent=1, default=str) + "\n")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
