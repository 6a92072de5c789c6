"""Job ids (UUIDv7: time-ordered) and lock tokens (random)."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = [0]  # last 122-bit value issued, so ids from one process never go backwards


def new_job_id() -> str:
    """A UUIDv7 string: 48-bit Unix milliseconds, then random bits, monotonic per process."""
    ms = time.time_ns() // 1_000_000
    with _lock:
        candidate = (ms << 74) | int.from_bytes(os.urandom(10)) >> 6
        _last[0] = value = max(candidate, _last[0] + 1)
    ms_part, rand = value >> 74, value & ((1 << 74) - 1)
    rand_a, rand_b = rand >> 62, rand & ((1 << 62) - 1)
    as_int = (ms_part << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{as_int:032x}"  # what str(uuid.UUID(int=as_int)) gives, at a fraction of the cost
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_lock_token() -> str:
    """A fresh fencing token for one claim."""
    return uuid.uuid4().hex
