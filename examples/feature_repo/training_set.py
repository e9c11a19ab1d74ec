"""Build a training set: each label row gets the features as they were known at its time.

python training_set.py
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

import loopml

ws = loopml.Workspace.open(".")
now = datetime.now(UTC)
labels = pd.DataFrame(
    {
        "customer_id": [1, 2, 3, 1, 999],  # 999 has no features: nulls, never a dropped row
        "event_timestamp": [now - timedelta(days=d) for d in (10, 10, 5, 1, 1)],
        "discount": [0.0, 0.1, 0.2, 0.0, 0.5],  # the request field of the on-demand feature
        "churned": [0, 1, 0, 0, 1],
    }
)
training = ws.features.get_historical_features(labels, features="churn_v1")
print(training.to_string(index=False))
training.to_parquet("data/training_set.parquet", index=False)
print(f"{len(training)} rows -> data/training_set.parquet")
