"""An obviously-correct point-in-time join: nested loops over plain Python rows.

The feature store's training sets are checked against this (``test_offline_properties.py``).
It is slow on purpose: no sorting, no as-of join, nothing to get clever with.

For each entity row ``(keys, t)`` and each view, the candidates are the view's rows with the
same join keys whose event time is ≤ ``t`` and whose created time (the event time when the
view has none, or the row's is missing) is ≤ ``t``; the value is the candidate with the largest
``(event, created)``, or null when there is none or its event time is older than ``t - ttl``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class ReferenceView:
    """A view as plain data: rows are dicts with the join keys, ``event_field``, maybe
    ``created_field`` and the features."""

    name: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    rows: Sequence[Mapping[str, Any]]
    event_field: str
    created_field: str | None = None
    ttl: timedelta | None = None


def as_utc(value: datetime) -> datetime:
    """Naive times are UTC (as the store reads them); aware ones are converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def latest_row(
    view: ReferenceView, keys: Mapping[str, Any], t: datetime
) -> Mapping[str, Any] | None:
    """The row of ``view`` for ``keys`` that was true and known at ``t`` and within the TTL."""
    t = as_utc(t)
    best: Mapping[str, Any] | None = None
    best_order: tuple[datetime, datetime] | None = None
    for row in view.rows:
        if any(row[k] != keys[k] for k in view.join_keys):
            continue
        if row[view.event_field] is None:
            continue
        event = as_utc(row[view.event_field])
        created_value = row.get(view.created_field) if view.created_field else None
        created = as_utc(created_value) if created_value is not None else event
        if event > t or created > t:
            continue
        order = (event, created)
        if best_order is None or order > best_order:
            best, best_order = row, order
    if best is None or best_order is None:
        return None
    if view.ttl is not None and best_order[0] < t - view.ttl:
        return None
    return best


def historical_features(
    entity_rows: Sequence[Mapping[str, Any]],
    views: Sequence[ReferenceView],
    timestamp_column: str = "event_timestamp",
) -> list[dict[str, Any]]:
    """Each entity row (same order, same length) with every view's features added (None when
    there is no value)."""
    out = []
    for entity in entity_rows:
        result = dict(entity)
        for view in views:
            row = latest_row(view, entity, entity[timestamp_column])
            for feature in view.features:
                result[feature] = None if row is None else row[feature]
        out.append(result)
    return out
