"""The lock of a run directory: one command trains in it at a time."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys

from tfp_flows.training.errors import ConfigError, reason

__all__ = ["LOCK_NAME", "locked"]

# The lock file of a run directory, which holds the PID and host of the command training in it.
LOCK_NAME = ".lock"


@contextlib.contextmanager
def locked(output_dir: str):
    """Holds the lock of `output_dir` (creating the directory) while the block runs.

    Two commands training in one directory would delete each other's checkpoints. The lock
    file is created atomically (O_CREAT | O_EXCL) and holds the PID and host of its holder; it
    is removed however the block ends. A lock left by a process that is gone from this host
    (killed, say) is taken over; one from another host cannot be checked, so it is refused.

    Raises:
        ConfigError: When `output_dir` is in use, a file, or not writable.
    """
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"--output_dir {output_dir} is a file, not a directory; pick another "
                          f"--output_dir")
    path = os.path.join(output_dir, LOCK_NAME)
    holder = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        os.makedirs(output_dir, exist_ok=True)
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = _lock_holder(path)
                if not _is_stale(other):
                    held_by = (f"process {other['pid']} on host {other['host']}" if other
                               else "an unknown process (the lock file is empty or garbled)")
                    raise ConfigError(
                        f"{output_dir} is in use by {held_by}, which holds its lock {path}; "
                        f"wait for that command to end or pick another --output_dir (if no "
                        f"command runs there, delete the lock file)") from None
                print(f"note: taking over the lock {path} of process {other['pid']}, which no "
                      f"longer runs on this host", file=sys.stderr)
                # Gone already when another command took it over first; then try again.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(holder, f)
            break
    except OSError as error:
        raise ConfigError(f"cannot write in --output_dir {output_dir} ({reason(error)}); pick a "
                          f"writable --output_dir") from None
    try:
        yield
    finally:
        # A lock someone deleted by hand may have been taken by another command since.
        if _lock_holder(path) == holder:
            os.remove(path)


def _lock_holder(path: str) -> dict | None:
    """The PID and host in a lock file, or None when it is gone, empty or garbled."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    if (isinstance(holder, dict) and isinstance(holder.get("pid"), int)
            and isinstance(holder.get("host"), str)):
        return holder
    return None


def _is_stale(holder: dict | None) -> bool:
    """Whether the holder of a lock is a process of this host that no longer runs.

    A lock naming this very process is stale too: this process does not hold it, so the PID
    was reused (as in a restarted container).
    """
    if holder is None or holder["host"] != socket.gethostname():
        return False
    if holder["pid"] == os.getpid():
        return True
    try:
        # Signal 0 is not sent: it only asks whether the process exists.
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user's
    return False
