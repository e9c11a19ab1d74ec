"""Write the example's raw data: data/customer_stats.parquet and data/orders.parquet.

Daily statistics of 100 customers over the last 30 days, each row created (known) a few
minutes to hours after its event time, as a nightly job would; and 2,000 orders.

    python make_data.py
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

CUSTOMERS = 100
DAYS = 30


def main() -> None:
    rng = np.random.default_rng(0)
    out = Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=d) for d in range(DAYS, 0, -1)]
    ids = np.repeat(np.arange(1, CUSTOMERS + 1), len(days))
    event = pd.DatetimeIndex(days * CUSTOMERS)
    stats = pd.DataFrame(
        {
            "customer_id": ids,
            "event_ts": event,
            # known 5 minutes to 6 hours after the day it describes
            "created_ts": event + pd.to_timedelta(rng.integers(300, 6 * 3600, len(ids)), "s"),
            "avg_purchase_30d": rng.gamma(2.0, 30.0, len(ids)).round(2),
            "n_orders_7d": rng.poisson(3, len(ids)),
        }
    )
    stats.to_parquet(out / "customer_stats.parquet", index=False)

    n = 2000
    orders = pd.DataFrame(
        {
            "customer_id": rng.integers(1, CUSTOMERS + 1, n),
            "order_ts": today - pd.to_timedelta(rng.integers(0, DAYS * 86400, n), "s"),
            "amount": rng.gamma(2.0, 40.0, n).round(2),
        }
    ).sort_values("order_ts")
    orders.to_parquet(out / "orders.parquet", index=False)
    print(f"wrote {len(stats)} customer_stats rows and {len(orders)} orders to {out}")


if __name__ == "__main__":
    main()
