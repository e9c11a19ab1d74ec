"""Training-serving skew: do the values a server returned match the offline values?

A *serving log* has one row per served lookup: the join keys, the time it was served
(``event_timestamp``) and each feature's served value (``loopml serve`` writes such logs;
any Parquet, CSV or JSON-lines file with those columns works). :func:`skew_check` recomputes
each row's features offline, point in time, and reports per feature how often they differ.

    report = skew_check(ws.features, "churn_v1", "logs/served.parquet")
    report.worst.rate      # share of rows whose served value differs from the offline one
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.features.errors import InvalidEntityFrame, SourceNotFound
from loopml.features.offline import DEFAULT_TIMESTAMP_COLUMN, utc_times

if TYPE_CHECKING:
    import pandas as pd

    from loopml.features.definitions import FeatureService
    from loopml.features.store import FeatureStore


@dataclass(frozen=True)
class FeatureSkew:
    """One feature's comparison: rows compared, rows whose values differ, a few examples."""

    feature: str
    compared: int
    mismatches: int
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "compared": self.compared,
            "mismatches": self.mismatches,
            "rate": self.rate,
            "examples": self.examples,
        }


@dataclass(frozen=True)
class SkewReport:
    """Per-feature mismatch rates of one serving log against offline values."""

    service: str
    rows: int
    features: list[FeatureSkew]

    @property
    def worst(self) -> FeatureSkew | None:
        return max(self.features, key=lambda f: f.rate, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "rows": self.rows,
            "features": [f.to_dict() for f in self.features],
        }


def read_log(path: str | Path) -> pd.DataFrame:
    """A serving log from Parquet, CSV or JSON lines (by suffix)."""
    import pandas as pd

    file = Path(path)
    if not file.exists():
        raise SourceNotFound(f"No serving log at {file}.")
    suffix = "".join(file.suffixes[-2:]).lower()
    try:
        if ".csv" in suffix:
            return pd.read_csv(file)
        if ".json" in suffix:
            return pd.read_json(file, lines=True)
        return pd.read_parquet(file)
    except (ValueError, OSError) as exc:
        raise InvalidEntityFrame(
            f"The serving log {file} can't be read: {str(exc).splitlines()[0]}"
        ) from exc


def same(served: Any, offline: Any) -> bool:
    """Whether a served value equals the offline one: both missing, equal, or floats equal
    to 1e-9 relative (JSON and float32 round trips don't count as skew)."""
    missing_a, missing_b = _missing(served), _missing(offline)
    if missing_a or missing_b:
        return missing_a and missing_b
    if isinstance(served, (int, float)) and isinstance(offline, (int, float)):
        return math.isclose(float(served), float(offline), rel_tol=1e-9, abs_tol=1e-12)
    try:
        return bool(served == offline) or str(served) == str(offline)
    except (TypeError, ValueError):
        return False


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA."""
    import pandas as pd

    if value is None:
        return True
    found = pd.isna(value)
    return found if isinstance(found, bool) else False


def skew_check(
    store: FeatureStore,
    service: FeatureService | str,
    log: str | Path | pd.DataFrame,
    *,
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN,
    examples: int = 3,
) -> SkewReport:
    """Compare each feature of ``service`` in ``log`` with its point-in-time offline value."""
    import pandas as pd

    chosen = store.definitions.service(service) if isinstance(service, str) else service
    frame = log if isinstance(log, pd.DataFrame) else read_log(log)
    refs = store.refs(chosen)
    names = [f for ref in refs for f in ref.features]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise InvalidEntityFrame(
            f"The serving log has no column for {', '.join(map(repr, missing))} of "
            f"{chosen.name!r}: it must hold each served feature value."
        )
    keys = list(dict.fromkeys(k for ref in refs for k in getattr(ref.view, "join_keys", ())))
    request = [c for c in frame.columns if c not in names]
    offline = store.get_historical_features(
        frame[request].reset_index(drop=True), chosen, event_timestamp_column=timestamp_column
    )
    served = frame.reset_index(drop=True)
    # Example times as ISO 8601 with their offset, read as the offline lookup read them.
    times = utc_times(served[timestamp_column], timestamp_column)
    results = []
    for name in names:
        bad = [
            i
            for i, (a, b) in enumerate(zip(served[name], offline[name], strict=True))
            if not same(_plain(a), _plain(b))
        ]
        shown = [
            {
                **{k: _plain(served.at[i, k]) for k in keys},
                timestamp_column: _iso(times.iat[i]),
                "served": _plain(served.at[i, name]),
                "offline": _plain(offline.at[i, name]),
            }
            for i in bad[:examples]
        ]
        results.append(FeatureSkew(name, len(served), len(bad), shown))
    return SkewReport(chosen.name, len(served), results)


def _iso(value: Any) -> str | None:
    """A time as ISO 8601 with its offset (None when missing)."""
    return None if _missing(value) else str(value.isoformat())


def _plain(value: Any) -> Any:
    """A cell as plain Python for reports: missing values as None, NumPy scalars unwrapped."""
    if _missing(value):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) else value
