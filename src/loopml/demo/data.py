"""The demo's synthetic customer-churn data: deterministic from a seed, with a known drift.

Every row is one customer seen at one time (a scoring request): a profile snapshot
(``tenure_months``, ``monthly_charges``, ``support_calls``, ``plan``, ``region``) and whether
the customer churned. Before the drift, charges follow a small daily season and churn
depends on tenure, charges, support calls and the plan. From the drift on, charges rise by
:data:`PRICE_RISE`, most customers are on the basic plan, and a competitor in the south
makes customers there churn much more: the inputs drift (PSI well above 0.25 on
``monthly_charges`` and ``plan``) and a model trained before the drift gets worse.

Pure functions of a seed and times: no store, no files.

>>> frame = customers(7, datetime(2026, 1, 1, tzinfo=UTC), hours=1, per_hour=5)
>>> list(frame.columns)  # doctest: +NORMALIZE_WHITESPACE
['customer_id', 'event_ts', 'tenure_months', 'monthly_charges', 'support_calls', 'plan',
 'region', 'churned']
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

#: The model's inputs, in the order the demo's pipeline uses them.
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan", "region"]
NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]
CATEGORICAL = ["plan", "region"]
LABEL = "churned"
#: How much monthly charges rise at the drift.
PRICE_RISE = 35.0
REGIONS = ["north", "south", "east", "west"]


def customers(
    seed: int,
    start: datetime,
    *,
    hours: int,
    per_hour: int,
    drifted: bool = False,
    first_id: int = 1,
) -> pd.DataFrame:
    """``per_hour`` customers seen in each of ``hours`` hours from ``start`` (UTC), each with
    a distinct ``customer_id`` from ``first_id`` on; ``drifted`` rows follow the world after
    the drift."""
    rng = np.random.default_rng(seed)
    rows = hours * per_hour
    offsets = (
        np.repeat(np.arange(hours) * 3600, per_hour)
        + np.sort(rng.integers(0, 3600, rows).reshape(hours, per_hour), axis=1).ravel()
    )
    times = pd.to_datetime(start.astimezone(UTC)) + pd.to_timedelta(offsets, "s")
    hour_of_day = times.hour.to_numpy() + times.minute.to_numpy() / 60
    season = 3.0 * np.sin(2 * np.pi * hour_of_day / 24)  # a small daily rhythm
    tenure = rng.integers(1, 72, rows).astype(float)
    charges = rng.normal(70, 20, rows) + season + (PRICE_RISE if drifted else 0.0)
    charges = charges.clip(15, 220).round(2)
    calls = rng.poisson(1.5, rows).astype(float)
    plan = rng.choice(["basic", "pro"], rows, p=[0.85, 0.15] if drifted else [0.55, 0.45])
    region = rng.choice(REGIONS, rows)
    score = -0.06 * tenure + 0.03 * charges + 0.6 * calls + 0.5 * (plan == "basic") - 2.0
    if drifted:  # a competitor opens in the south; the price rise is partly absorbed
        score = score + 3.0 * (region == "south") - 1.0 * (plan == "basic") - 0.8
    churned = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    return pd.DataFrame(
        {
            "customer_id": np.arange(first_id, first_id + rows, dtype=np.int64),
            "event_ts": times,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "plan": plan,
            "region": region,
            "churned": churned,
        }
    )


def profiles(seen: pd.DataFrame, *, seed: int, later: bool = True) -> pd.DataFrame:
    """The feature source's snapshots of the customers in ``seen``: the one taken when each
    was seen, an older one (three days before, fewer months and calls) and, with ``later``,
    one six hours after (support calls up for those who churned: a value a training set
    must not see, since it was not known yet). ``created_ts`` is when a snapshot became
    known (its event time)."""
    rng = np.random.default_rng(seed)
    now = seen[["customer_id", "event_ts", *FEATURES]]
    older = now.assign(
        event_ts=now["event_ts"] - timedelta(days=3),
        tenure_months=(now["tenure_months"] - 0.0).clip(lower=1),
        support_calls=(now["support_calls"] - rng.integers(0, 2, len(now))).clip(lower=0),
    )
    parts = [older, now]
    if later:
        parts.append(
            now.assign(
                event_ts=now["event_ts"] + timedelta(hours=6),
                support_calls=now["support_calls"] + 3.0 * seen["churned"],
            )
        )
    out = pd.concat(parts, ignore_index=True).sort_values(["event_ts", "customer_id"])
    return out.assign(created_ts=out["event_ts"]).reset_index(drop=True)


def labels(seen: pd.DataFrame) -> pd.DataFrame:
    """The label rows of ``seen``: each customer, the time it was seen, whether it churned."""
    return seen[["customer_id", "event_ts", LABEL]].rename(columns={"event_ts": "event_timestamp"})


def hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
