"""The demand calendar: weekly pattern, the 6.18 / 11.11 / 12.12 peaks and the CNY dip."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from .params import CATEGORIES, WorldParams

# Chinese New Year (logistics shut down for about a week around it).
CNY = {
    2020: (1, 25),
    2021: (2, 12),
    2022: (2, 1),
    2023: (1, 22),
    2024: (2, 10),
    2025: (1, 29),
    2026: (2, 17),
    2027: (2, 6),
    2028: (1, 26),
    2029: (2, 13),
    2030: (2, 3),
    2031: (1, 23),
    2032: (2, 11),
    2033: (1, 31),
    2034: (2, 19),
    2035: (2, 8),
}


def _peaks_and_cny(p: WorldParams, as_of_date: date) -> tuple[float, float]:
    """Shopping-festival lift (summed bumps) and CNY factor for one calendar date."""
    o = as_of_date.toordinal()
    peaks = 0.0
    cny = 1.0
    for y in (as_of_date.year - 1, as_of_date.year, as_of_date.year + 1):
        for (m, dd), amp in (
            ((6, 18), p.peak_618),
            ((11, 11), p.peak_1111),
            ((12, 12), p.peak_1212),
        ):
            x = (o - date(y, m, dd).toordinal()) / p.peak_sigma_days
            if abs(x) < 6:
                peaks += amp * np.exp(-0.5 * x * x)
        if y in CNY:
            x = (o - date(y, *CNY[y]).toordinal()) / 5.0
            if abs(x) < 6:
                cny -= p.cny_dip * np.exp(-0.5 * x * x)
    if date(as_of_date.year, 10, 20) <= as_of_date <= date(as_of_date.year, 11, 11):
        peaks += p.presale_1111
    return peaks, cny


def season_table(p: WorldParams, start: date, first: int, days: int) -> np.ndarray:
    """Demand multiplier per (category, day) for days first .. days-1 (weekly x peaks x CNY)."""
    out = np.empty((len(CATEGORIES), days - first))
    scale = np.array(p.category_peak_scale)
    for j, t in enumerate(range(first, days)):
        as_of_date = start + timedelta(days=t)
        peaks, cny = _peaks_and_cny(p, as_of_date)
        out[:, j] = p.weekly[as_of_date.weekday()] * (1.0 + scale * peaks) * cny
    return out
