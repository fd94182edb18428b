"""The rows training reads from gold_features: all of them, or a bounded, seeded, stratified sample.

A features table grows without end; the training driver must not. When the labelled rows exceed
`max_rows` (TWEETOPS_TRAIN_MAX_ROWS), training reads a sample of exactly `max_rows` of them,
allocated to each (label, event_date) stratum in proportion to its size (largest remainders), and
within a stratum the rows with the smallest seeded hash of their id: the same table version and
seed always give the same sample. Two streaming passes over the table, memory bounded by the
sample: the first counts the strata, the second keeps each stratum's lowest hashes.
The description returned is recorded on the training run (lineage tag tweetops.training_sample).
"""
from __future__ import annotations

import heapq
import zlib
from collections import Counter
from typing import TYPE_CHECKING

from ml.contract import LABELS

if TYPE_CHECKING:
    import pandas as pd

STRATA = ("label", "event_date")
BATCH_ROWS = 65_536


def read_training_rows(table, columns: list[str], max_rows: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """(rows of `columns`, a description of how they were chosen) from a DeltaTable of gold_features.

    Unlabelled rows are never read into the sample (training drops them anyway)."""
    dataset = table.to_pyarrow_dataset()
    counts: Counter = Counter()
    for batch in dataset.to_batches(columns=list(STRATA), batch_size=BATCH_ROWS):
        counts.update(zip(batch.column("label").to_pylist(), batch.column("event_date").to_pylist()))
    labelled = {key: n for key, n in counts.items() if key[0] in LABELS}
    total = sum(labelled.values())
    if total <= max_rows:
        frame = dataset.to_table(columns=columns).to_pandas()
        return frame, {"sampled": False, "rows_labelled": total, "max_rows": max_rows}

    quotas = _proportional_quotas(labelled, max_rows)
    kept: dict[tuple, list] = {key: [] for key in quotas}  # per stratum: a max-heap of (-hash, row)
    needed = sorted(set(columns) | set(STRATA) | {"id"})
    # No scan filter on the label: on files Spark wrote (large_string columns) pyarrow's isin
    # pushdown matched nothing. Unlabelled rows have no quota and are skipped below.
    for batch in dataset.to_batches(columns=needed, batch_size=BATCH_ROWS):
        values = {c: batch.column(c).to_pylist() for c in needed}
        for i, tweet_id in enumerate(values["id"]):
            key = (values["label"][i], values["event_date"][i])
            quota = quotas.get(key, 0)
            if not quota:
                continue
            priority = zlib.crc32(f"{seed}:{tweet_id}".encode())
            heap = kept[key]
            if len(heap) < quota:
                heapq.heappush(heap, (-priority, tweet_id, i, [values[c][i] for c in columns]))
            elif -heap[0][0] > priority:
                heapq.heapreplace(heap, (-priority, tweet_id, i, [values[c][i] for c in columns]))
    import pandas as pd

    rows = [entry[3] for heap in kept.values() for entry in heap]
    frame = pd.DataFrame(rows, columns=columns).sort_values("id", kind="stable").reset_index(drop=True)
    return frame, {"sampled": True, "rows_labelled": total, "max_rows": max_rows, "rows_sampled": len(frame),
                   "seed": seed, "strata": "+".join(STRATA), "hash": "crc32(seed:id)"}


def _proportional_quotas(counts: dict[tuple, int], size: int) -> dict[tuple, int]:
    """`size` rows shared out in proportion to each stratum's count (largest remainders, ties by key)."""
    total = sum(counts.values())
    exact = {key: size * n / total for key, n in counts.items()}
    quotas = {key: int(value) for key, value in exact.items()}
    short = size - sum(quotas.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - quotas[k]), str(k)))[:short]:
        quotas[key] += 1
    return quotas
