"""One retry policy for every storage call: bounded backoff, and a process-wide deadline.

A transient failure (I/O, a storage service error, a corrupt or short download) is retried with
exponential backoff; once storage has failed without a success for :func:`deadline_s` seconds,
counted from the start of the first failing call, every call fails at once with
:class:`StorageUnavailable`, never a reject. Each attempt's network timeout
(:func:`attempt_timeout`, passed to every request) is what is left of the deadline, so a backend
that accepts connections and never answers costs the deadline, not 60 s read timeouts per try.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("mmvideos.data.storage")

#: Seconds storage may keep failing before the process gives up on it: a dead backend ends the
#: stage in minutes, not in hours of per-object retries. ``MMVIDEOS_STORAGE_DEADLINE_S`` sets it.
DEFAULT_DEADLINE_S = 120.0

#: Tries per call while the backend is within its deadline (backoff 0.5, 1, 2, 4... s, at most 10).
ATTEMPTS = 5

#: The longest a single request may wait for the server (connect, or between two bytes read).
READ_TIMEOUT_S = 60.0

_attempt = threading.local()


def attempt_timeout() -> float:
    """Seconds the request being made may wait for the server: :data:`READ_TIMEOUT_S`, or less
    when less of the storage deadline is left (inside :func:`retrying`)."""
    return getattr(_attempt, "timeout", None) or min(READ_TIMEOUT_S, deadline_s())


class StorageUnavailable(OSError):
    """Storage kept failing (network, 5xx, permissions, I/O) past its retries or the deadline:
    nothing was learnt about the file, so it is never a reject; the stage fails and a re-run
    examines the file again."""


class _Outage:
    """When storage started failing without a success since (process-wide)."""

    since: float | None = None
    last: str = ""  # the last failure, for the message


def deadline_s() -> float:
    """The storage deadline of this process (``MMVIDEOS_STORAGE_DEADLINE_S``, default 120 s)."""
    value = os.environ.get("MMVIDEOS_STORAGE_DEADLINE_S", "")
    try:
        return float(value) if value else DEFAULT_DEADLINE_S
    except ValueError:
        raise ValueError(f"MMVIDEOS_STORAGE_DEADLINE_S must be a number of seconds, got {value!r}") from None


def _is_transient(exc: BaseException) -> bool:
    """A failure to read now, not a property of the file (a missing file is neither: it is gone)."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, StorageUnavailable)):
        return False
    from google.api_core.exceptions import NotFound

    return isinstance(exc, transient_errors()) and not isinstance(exc, NotFound)


def retrying(what: str, call: Callable[[], T]) -> T:
    """``call()``, retried with bounded exponential backoff on transient storage errors.

    Once storage has failed without a success for :func:`deadline_s` seconds every call fails
    at once with :class:`StorageUnavailable`, so a dead backend costs the deadline once, not per
    object. Other errors (a missing file, bad content) pass through untouched.
    """
    for attempt in range(ATTEMPTS):
        started = time.monotonic()
        failing = started - _Outage.since if _Outage.since is not None else 0.0
        if failing >= deadline_s():
            raise StorageUnavailable(f"{what}: storage has not answered for {deadline_s():.0f} s "
                                     f"(MMVIDEOS_STORAGE_DEADLINE_S; last error: {_Outage.last}); check it and "
                                     "run again")
        _attempt.timeout = max(0.5, min(READ_TIMEOUT_S, deadline_s() - failing))
        try:
            result = call()
        except Exception as exc:
            if not _is_transient(exc):
                raise
            _Outage.since = _Outage.since if _Outage.since is not None else started
            _Outage.last = f"{type(exc).__name__}: {_short(exc)}"
            if attempt == ATTEMPTS - 1:
                raise StorageUnavailable(f"{what}: {type(exc).__name__}: {_short(exc)} "
                                         f"(after {ATTEMPTS} tries); run again once storage answers") from exc
            log.warning("%s: %s, retrying", what, _short(exc))
            left = deadline_s() - (time.monotonic() - _Outage.since)
            time.sleep(max(0.0, min(0.5 * 2 ** attempt, 10.0, left)))
        else:
            _Outage.since = None
            return result
        finally:
            _attempt.timeout = None
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "cannot be read now" (a missing file, I/O, a storage service error),
    as opposed to bad content: what is not committed as a result."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import TransportError

    try:  # a download whose checksum did not match: read it again
        from google.resumable_media.common import DataCorruption
    except ImportError:  # newer google-cloud-storage
        from google.cloud.storage.exceptions import DataCorruption

    return OSError, GoogleAPIError, TransportError, DataCorruption
