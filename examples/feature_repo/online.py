"""Read online values (after `loopml features materialize`): what a model server would do.

python online.py
"""

from __future__ import annotations

import loopml

ws = loopml.Workspace.open(".")
rows = [{"customer_id": 1, "discount": 0.1}, {"customer_id": 2, "discount": 0.0}]
values = ws.features.get_online_features("churn_v1", rows)
for column, items in values.to_dict().items():
    print(f"{column}: {items}")
