"""Shared constants of the simulated world (kept apart so every step module can import them)."""

from __future__ import annotations

import numpy as np

NEVER = np.int64(1 << 40)  # "no such day" for event-day arrays
U64 = np.uint64
DAY = 86_400
Arrays = dict[str, np.ndarray]  # one column per key (a day table)
