"""Portfolio guardrails: expected-loss budget and category / streamer concentration."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def group_share_scale(
    amount: np.ndarray, groups: np.ndarray, max_share: float
) -> tuple[np.ndarray, bool]:
    """Per-row scale so that no group exceeds ``max_share`` of the scaled total.

    Water-filling: every over-concentrated group is cut to the same level L, the largest L with
    L <= max_share * (sum of min(group, L) + unconstrained). Rows whose group is None/NaN are
    unconstrained (e.g. no streamer). Returns (scale, feasible); infeasible means only L = 0
    would satisfy it (fewer than 1/max_share groups and nothing unconstrained): then nothing is
    scaled and the caller reports it, because zeroing the whole book is never the intent.
    """
    n = len(amount)
    scale = np.ones(n)
    if n == 0 or amount.sum() <= 0:
        return scale, True
    keys = pd.Series(groups, dtype=object)
    has_group = keys.notna().to_numpy()
    unconstrained = float(amount[~has_group].sum())
    if not has_group.any():
        return scale, True
    totals = pd.Series(amount[has_group]).groupby(keys[has_group].to_numpy()).sum()
    c = np.sort(totals.to_numpy())[::-1]
    y = max_share
    if c[0] <= y * (c.sum() + unconstrained) * (1 + 1e-12):
        return scale, True
    level = None
    for k in range(1, len(c) + 1):
        lower = c[k] if k < len(c) else 0.0
        rest = c[k:].sum()
        g_lower = y * (k * lower + rest + unconstrained) - lower
        if g_lower >= 0 and y * k < 1:
            level = y * (rest + unconstrained) / (1 - y * k)
            break
    if level is None or level <= 0:
        return scale, False
    group_total = keys.map(totals).to_numpy(dtype=float, na_value=np.nan)
    over = has_group & (group_total > level)
    scale[over] = level / group_total[over]
    return scale, True


def apply_guardrails(
    amount: np.ndarray,
    pd_: np.ndarray,
    lgd: float,
    category: np.ndarray,
    streamer: np.ndarray,
    guardrails: dict[str, Any],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Scale offered amounts down until portfolio guardrails hold.

    Rule (documented in docs/policy.md): category and streamer concentration are cut by
    water-filling (only the over-concentrated groups shrink, all rows of a group by the same
    factor), repeated until both hold; then, if EL still exceeds the budget, every offer is
    scaled by the same factor budget / EL, which leaves concentration shares unchanged.
    """
    n = len(amount)
    scale = np.ones(n)
    flags = {k: np.zeros(n, dtype=bool) for k in ("el", "category", "streamer")}
    info: dict[str, Any] = {"category_feasible": True, "streamer_feasible": True}
    for _ in range(50):
        current = amount * scale
        s_cat, ok_cat = group_share_scale(current, category, guardrails["max_category_share"])
        info["category_feasible"] = ok_cat
        scale *= s_cat
        flags["category"] |= s_cat < 1 - 1e-12
        current = amount * scale
        s_str, ok_str = group_share_scale(current, streamer, guardrails["max_streamer_share"])
        info["streamer_feasible"] = ok_str
        scale *= s_str
        flags["streamer"] |= s_str < 1 - 1e-12
        if (s_cat >= 1 - 1e-9).all() and (s_str >= 1 - 1e-9).all():
            break
    el = float((pd_ * lgd * amount * scale).sum())
    budget = float(guardrails["el_budget"])
    if el > budget:
        factor = budget / el
        affected = amount * scale > 0
        scale[affected] *= factor
        flags["el"] |= affected
    info["el_before_budget"] = el
    return scale, flags, info
