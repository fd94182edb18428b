"""Seeded samples that keep the mix of what they are drawn from (labels, days, topics).

Every sample a figure is computed on (a `--limit` of the corpus, a drift window, a reference)
goes through `stratified_sample`: each stratum gets its share of the rows (largest remainders,
so the counts add up exactly), and the rows inside a stratum are drawn with a fixed seed. The
first N rows of a file sorted by label would otherwise be N negatives.
"""
from __future__ import annotations

from typing import Hashable, Sequence


def allocate(counts: dict[Hashable, int], n: int) -> dict[Hashable, int]:
    """How many of `n` rows each stratum gets: proportional to its size, largest remainders first,
    never more than it has. Deterministic (ties broken by the stratum's order in `counts`)."""
    total = sum(counts.values())
    if n >= total:
        return dict(counts)
    exact = {key: n * size / total for key, size in counts.items()}
    taken = {key: min(counts[key], int(share)) for key, share in exact.items()}
    by_remainder = sorted(counts, key=lambda key: exact[key] - int(exact[key]), reverse=True)
    left = n - sum(taken.values())
    while left > 0:  # at most two passes: a stratum is only full when it had fewer rows than its share
        for key in by_remainder:
            if left and taken[key] < counts[key]:
                taken[key] += 1
                left -= 1
    return taken


def stratified_indices(strata: Sequence[Hashable], n: int, seed: int) -> list[int]:
    """Positions of a seeded sample of `n` of the items, keeping the strata's shares; ascending."""
    import numpy as np

    groups: dict[Hashable, list[int]] = {}
    for position, key in enumerate(strata):
        groups.setdefault(key, []).append(position)
    taken = allocate({key: len(rows) for key, rows in groups.items()}, n)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for key in sorted(groups, key=repr):  # a stable order: the same seed draws the same rows
        rows = groups[key]
        chosen += [rows[i] for i in rng.choice(len(rows), size=taken[key], replace=False)]
    return sorted(chosen)


def stratified_sample(frame, n: int, by: Sequence[str], seed: int):
    """A seeded sample of `n` rows of a DataFrame, stratified by the columns `by` (missing values
    are a stratum of their own); the whole frame, reindexed, when it has at most `n` rows.

    Rows keep their order in `frame`, so sort it first (e.g. by id) for a sample that does not
    depend on how the rows were read."""
    frame = frame.reset_index(drop=True)
    if len(frame) <= n:
        return frame
    keys = list(zip(*(frame[column].astype(object).where(frame[column].notna(), None) for column in by)))
    return frame.iloc[stratified_indices(keys, n, seed)].reset_index(drop=True)
