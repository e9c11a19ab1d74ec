"""Reference profiles: what a model's training data looked like, frozen once, so that every
later comparison (a notebook, every monitored window) cuts the same bins.

A :class:`Profile` holds one :class:`FeatureProfile` per column and one for the model's
predictions: for a numeric feature the inner edges of its quantile bins (10 by default,
computed once on the reference and deduplicated for heavy ties) and the share of reference
values in each, its null rate, min, max, mean and standard deviation; for a categorical one
the frequency of each category. Stored as JSON in ``monitor_references`` (one per model
version; storing again replaces it) with a bounded random sample of the rows (5,000) as a
Parquet blob for two-sample tests.

    ref = set_reference("churn@production", "data/train.parquet", workspace=ws)
    ref.profile.features["age"].edges        # (23.0, 29.0, 34.0, …)
    ref.sample()                             # the stored sample, a DataFrame

Which columns are which: booleans, strings, pandas categoricals and objects are categorical;
integers, floats, decimals and datetimes (as epoch seconds) are numeric. Integers stay
numeric even with few distinct values: deduplicated quantile edges then fall on the values
themselves, so each value keeps its own bin and KS and the range check still apply.
Categories are compared as text (``str(value)``); a column with more than
:data:`MAX_CATEGORIES` categories keeps the most frequent ones and pools the rest as
``__other__``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput, LoopmlWarning

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from loopml.store.blobs import BlobStore
    from loopml.workspace import WorkspaceLike

NUMERIC, CATEGORICAL = "numeric", "categorical"
#: The name of the model's output wherever it sits beside the features (profile, sample,
#: metrics).
PREDICTION = "__prediction__"
#: Rows kept in a reference's sample for two-sample tests.
SAMPLE_ROWS = 5000
#: Categories kept per column; the rest are pooled as ``__other__``.
MAX_CATEGORIES = 1000
_FORMAT = 1


@dataclass(frozen=True)
class FeatureProfile:
    """One column of a reference: its frozen bins (numeric) or category frequencies
    (categorical), null rate and range. Numeric bins are ``(-inf, e1], (e1, e2], …,
    (ek, inf)`` for ``edges = (e1, …, ek)``; ``proportions`` has one share per bin (empty
    when the column had no values)."""

    name: str
    kind: str  # "numeric" | "categorical"
    dtype: str
    null_rate: float
    edges: tuple[float, ...] = ()
    proportions: tuple[float, ...] = ()
    categories: dict[str, float] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "null_rate": self.null_rate,
        }
        if self.kind == NUMERIC:
            data |= {
                "edges": list(self.edges),
                "proportions": list(self.proportions),
                "min": self.min,
                "max": self.max,
                "mean": self.mean,
                "std": self.std,
            }
        else:
            data["categories"] = dict(self.categories)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureProfile:
        return cls(
            name=data["name"],
            kind=data["kind"],
            dtype=data.get("dtype", ""),
            null_rate=float(data.get("null_rate", 0.0)),
            edges=tuple(float(e) for e in data.get("edges", ())),
            proportions=tuple(float(p) for p in data.get("proportions", ())),
            categories={str(k): float(v) for k, v in data.get("categories", {}).items()},
            min=data.get("min"),
            max=data.get("max"),
            mean=data.get("mean"),
            std=data.get("std"),
        )


@dataclass(frozen=True)
class Profile:
    """A reference profile: every feature's :class:`FeatureProfile`, the predictions' (if
    known), the number of reference rows and the number of bins asked for."""

    features: dict[str, FeatureProfile]
    predictions: FeatureProfile | None = None
    rows: int = 0
    bins: int = 10

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "rows": self.rows,
                "bins": self.bins,
                "features": [f.to_dict() for f in self.features.values()],
                "predictions": self.predictions.to_dict() if self.predictions else None,
            },
            separators=(",", ":"),
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Profile:
        try:
            data = json.loads(text)
            features = [FeatureProfile.from_dict(f) for f in data["features"]]
            predictions = data.get("predictions")
            return cls(
                features={f.name: f for f in features},
                predictions=FeatureProfile.from_dict(predictions) if predictions else None,
                rows=int(data.get("rows", 0)),
                bins=int(data.get("bins", 10)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"Not a reference profile ({type(exc).__name__}: {exc}); build one with "
                "loopml.monitoring.build_profile or `loopml monitor set-reference`."
            ) from exc


# -- reading data ------------------------------------------------------------------------


def as_frame(data: Any, what: str = "reference data", *, allow_empty: bool = False) -> pd.DataFrame:
    """``data`` (a DataFrame, a pyarrow Table, or the path of a .parquet or .csv file) as a
    DataFrame with at least one row and one column (unless ``allow_empty``);
    :class:`InvalidInput` says what is wrong otherwise."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, (str, os.PathLike)):
        frame = _read_file(Path(data), what)
    elif type(data).__module__.startswith("pyarrow") and hasattr(data, "to_pandas"):
        frame = data.to_pandas()
    else:
        raise InvalidInput(
            f"The {what} must be a pandas DataFrame, a pyarrow Table or the path of a "
            f".parquet or .csv file, not {type(data).__name__}."
        )
    if not allow_empty and (frame.shape[0] == 0 or frame.shape[1] == 0):
        raise InvalidInput(
            f"The {what} is empty ({frame.shape[0]} rows, {frame.shape[1]} columns): "
            "a profile needs at least one row and one column."
        )
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _read_file(path: Path, what: str) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise InvalidInput(f"The {what} file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in {".parquet", ".pq", ".csv"}:
        raise InvalidInput(f"The {what} file {path}: use a .parquet or .csv file.")
    try:
        return pd.read_parquet(path) if suffix != ".csv" else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"The {what} file {path} is empty.") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InvalidInput(
            f"Cannot read the {what} file {path} ({type(exc).__name__}: {exc})."
        ) from exc


def feature_kind(column: pd.Series) -> str:
    """:data:`NUMERIC` or :data:`CATEGORICAL` for a column (see the module doc)."""
    import pandas as pd

    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return CATEGORICAL
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return NUMERIC
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        if inferred in {"integer", "floating", "mixed-integer-float", "decimal"}:
            return NUMERIC
    return CATEGORICAL


def numeric_values(column: Any) -> npt.NDArray[np.float64]:
    """A column as float64 with NaN for nulls: datetimes as epoch seconds; text that is not
    a number, and infinities, count as nulls."""
    import numpy as np
    import pandas as pd

    series = column if isinstance(column, pd.Series) else pd.Series(column)
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        stamps = series.dt.tz_convert("UTC") if getattr(dtype, "tz", None) else series
        values = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        values[series.isna().to_numpy()] = np.nan
        return values / 1e9
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        series = pd.to_numeric(series.astype(object), errors="coerce")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():  # no bin, range or JSON holds an infinity
        values = np.where(infinite, np.nan, values)
    return values


def category_values(column: Any) -> pd.Series:
    """The non-null values of a column as text (how categories are compared)."""
    import pandas as pd

    series = column if isinstance(column, pd.Series) else pd.Series(column)
    return series[series.notna()].astype(str)


def prediction_values(output: Any) -> pd.Series:
    """A model's output as one column: a 1-D output as it is, a one-column frame or array
    its column, several columns (class probabilities) the last one — for a binary
    classifier the positive class's probability."""
    import numpy as np
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        return output.iloc[:, -1].reset_index(drop=True).rename(PREDICTION)
    if isinstance(output, pd.Series):
        return output.reset_index(drop=True).rename(PREDICTION)
    array = np.asarray(output)
    if array.ndim == 2:
        array = array[:, -1]
    elif array.ndim != 1:
        raise InvalidInput(
            f"Model predictions must be 1-D or 2-D to be profiled, got shape {array.shape}."
        )
    return pd.Series(array, name=PREDICTION)


# -- building ----------------------------------------------------------------------------


def sorted_numeric(
    frame: pd.DataFrame, names: list[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The numeric columns ``names`` of ``frame`` as one Fortran-ordered float64 matrix
    sorted along axis 0 (in place, one sort for all columns; NaN last), and the count of
    non-null values in each column."""
    import numpy as np

    matrix = np.empty((len(frame), len(names)), dtype=np.float64, order="F")
    for j, name in enumerate(names):
        matrix[:, j] = numeric_values(frame[name])
    matrix.sort(axis=0)
    valid = np.full(len(names), len(frame), dtype=np.int64)
    if len(frame):
        for j in np.flatnonzero(np.isnan(matrix[-1])).tolist():
            valid[j] = len(frame) - int(np.isnan(matrix[:, j]).sum())
    return matrix, valid


def numeric_profiles(
    frame: pd.DataFrame, names: list[str], bins: int
) -> tuple[list[FeatureProfile], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Profiles of numeric columns, vectorised: one sort of the matrix, one gather of every
    column's quantiles (:func:`~loopml.monitoring.stats.sorted_quantiles`). Also returns the
    sorted matrix and non-null counts, for callers that test against the same values."""
    import numpy as np

    from loopml.monitoring import stats

    matrix, valid = sorted_numeric(frame, names)
    rows = len(frame)
    levels = stats.quantile_levels(bins)
    quantiles = (
        stats.sorted_quantiles(matrix, valid, levels)
        if levels.size and names
        else np.empty((0, len(names)))
    )
    profiles: list[FeatureProfile] = []
    for j, name in enumerate(names):
        count = int(valid[j])
        values = matrix[:count, j]
        null_rate = 1.0 - count / rows if rows else 0.0
        dtype = str(frame[name].dtype)
        if count == 0:
            profiles.append(FeatureProfile(name, NUMERIC, dtype, null_rate))
            continue
        edges = np.unique(quantiles[:, j]) if levels.size else np.empty(0)
        counts = stats.sorted_bin_counts(edges, values)
        profiles.append(
            FeatureProfile(
                name=name,
                kind=NUMERIC,
                dtype=dtype,
                null_rate=null_rate,
                edges=tuple(float(e) for e in edges),
                proportions=tuple(float(p) for p in counts / count),
                min=float(values[0]),
                max=float(values[-1]),
                mean=float(values.mean()),
                std=float(values.std(ddof=1)) if count > 1 else None,
            )
        )
    return profiles, matrix, valid


def categorical_profile(name: str, column: pd.Series) -> FeatureProfile:
    """The category frequencies of one column (at most :data:`MAX_CATEGORIES`, the rest
    pooled as ``__other__``)."""
    from loopml.monitoring.stats import OTHER

    rows = len(column)
    values = category_values(column)
    counts = values.value_counts(sort=True)
    total = int(counts.sum())
    frequencies = {str(k): int(v) / total for k, v in counts.items()} if total else {}
    if len(frequencies) > MAX_CATEGORIES:
        kept = dict(list(frequencies.items())[:MAX_CATEGORIES])
        kept[OTHER] = max(0.0, 1.0 - sum(kept.values()))
        frequencies = kept
    return FeatureProfile(
        name=name,
        kind=CATEGORICAL,
        dtype=str(column.dtype),
        null_rate=1.0 - total / rows if rows else 0.0,
        categories=frequencies,
    )


def build_profile(data: Any, *, predictions: Any = None, bins: int = 10) -> Profile:
    """The reference profile of ``data`` (a DataFrame, a pyarrow Table or a .parquet/.csv
    path), and of ``predictions`` (the model's outputs on those rows, or on a sample of
    them) when given.

    >>> import pandas as pd
    >>> p = build_profile(pd.DataFrame({"x": range(100), "c": ["a", "b"] * 50}), bins=4)
    >>> p.features["x"].edges, p.features["c"].categories
    ((24.75, 49.5, 74.25), {'a': 0.5, 'b': 0.5})
    """
    profile, _matrix, _valid = _build(as_frame(data), predictions, bins)
    return profile


def _build(
    frame: pd.DataFrame, predictions: Any, bins: int
) -> tuple[Profile, npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise InvalidInput(f"bins must be a positive whole number, not {bins!r}.")
    names = list(frame.columns)
    if len(set(names)) != len(names):
        raise InvalidInput(f"The reference data has repeated column names: {names}.")
    kinds = {name: feature_kind(frame[name]) for name in names}
    numeric = [n for n in names if kinds[n] == NUMERIC]
    built, matrix, valid = numeric_profiles(frame, numeric, bins)
    by_name = {p.name: p for p in built}
    for name in names:
        if kinds[name] == CATEGORICAL:
            by_name[name] = categorical_profile(name, frame[name])
    predicted = None
    if predictions is not None:
        predicted = profile_column(prediction_values(predictions), PREDICTION, bins)
    profile = Profile({n: by_name[n] for n in names}, predicted, rows=len(frame), bins=bins)
    return profile, matrix, valid


def profile_column(column: pd.Series, name: str, bins: int = 10) -> FeatureProfile:
    """The :class:`FeatureProfile` of one column (a model's predictions, say)."""
    frame = column.reset_index(drop=True).to_frame(name)
    if feature_kind(frame[name]) == NUMERIC:
        return numeric_profiles(frame, [name], bins)[0][0]
    return categorical_profile(name, frame[name])


def sample_positions(rows: int, size: int = SAMPLE_ROWS, seed: int = 0) -> npt.NDArray[np.intp]:
    """Which rows a sample of ``size`` out of ``rows`` keeps (all of them when there are
    fewer), in their original order; the same for the same seed."""
    import numpy as np

    if rows <= size:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))


def sample_of(data: Any, rows: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    """A uniform random sample of ``rows`` rows of ``data`` without replacement (all rows
    when it has fewer), in their original order, with a fresh index."""
    frame = as_frame(data)
    return frame.iloc[sample_positions(len(frame), rows, seed)].reset_index(drop=True)


# -- storing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The stored reference of one model version."""

    model: str
    version: int
    profile: Profile
    rows: int
    source: str | None
    created_at: datetime
    sample_hash: str | None = None
    blobs: BlobStore | None = field(default=None, repr=False, compare=False)

    def sample(self) -> pd.DataFrame:
        """The stored sample of reference rows (with the model's predictions on them as
        ``__prediction__`` when they were profiled); empty when none was stored."""
        import pandas as pd
        import pyarrow.parquet as pq

        if self.sample_hash is None or self.blobs is None:
            return pd.DataFrame()
        return pq.read_table(io.BytesIO(self.blobs.get_bytes(self.sample_hash))).to_pandas()


def _bins_setting(workspace: Any) -> int:
    monitor = getattr(workspace.settings, "monitor", None)
    return int(getattr(monitor, "bins", 10))


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        # A column of mixed Python objects: keep it as text (how categories compare anyway).
        mixed = frame.select_dtypes(include="object").columns
        text = frame.astype({c: "string" for c in mixed})
        table = pa.Table.from_pandas(text, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _model_columns(version: Any, frame: pd.DataFrame) -> list[str]:
    """The columns to profile: the model's input columns when its signature names them
    (a label column or ids beside them are left out), else every column."""
    signature = version.signature
    named = [c for c in (signature.columns if signature else []) if not c.startswith("[")]
    if not named:
        return list(frame.columns)
    missing = [c for c in named if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"The reference data lacks input columns of {version.uri}: {missing}. Pass the "
            "data the model was trained on (its columns: "
            f"{', '.join(map(str, frame.columns[:20]))})."
        )
    return named


def _as_signed(version: Any, frame: pd.DataFrame, source: str | None) -> pd.DataFrame:
    """``frame`` with the text columns the signature says are numbers read as numbers; a
    value that isn't one is an error naming it (else one stray 'abc' in a float column made
    the whole column categorical, and every window's drift of it meaningless)."""
    import numpy as np
    import pandas as pd

    signature = version.signature
    if signature is None:
        return frame
    out = frame
    for column, dtype in signature.inputs:
        if column not in frame.columns or frame[column].dtype.kind not in "OSU":
            continue
        try:
            kind = np.dtype(dtype).kind
        except TypeError:
            continue
        if kind not in "iuf":
            continue
        values = frame[column]
        numbers = pd.to_numeric(values, errors="coerce")
        text = values.astype("string").str.strip()
        bad = values.notna() & (text != "") & numbers.isna()
        if bad.any():
            rows = [int(i) + 1 for i in np.flatnonzero(bad.to_numpy())[:3]]
            shown = "; ".join(f"row {r}: {values.iloc[r - 1]!r}" for r in rows)
            where = f" of {source}" if source else ""
            raise InvalidInput(
                f"Column {column!r}{where} holds {int(bad.sum())} value(s) that aren't "
                f"numbers, but {version.uri} takes {dtype} ({shown}; rows count from 1). "
                "Fix or drop those rows: the reference is what monitoring compares with."
            )
        out = out.assign(**{column: numbers})
    return out


def set_reference(
    model_ref: str,
    data: Any,
    *,
    predictions: Any = None,
    source: str | None = None,
    model: Any = None,
    bins: int | None = None,
    sample_rows: int = SAMPLE_ROWS,
    workspace: WorkspaceLike = None,
) -> Reference:
    """Store the reference profile of model version ``model_ref`` (``churn@production``,
    ``churn/4``, ``churn`` for the latest, or a ``models:/`` URI) built from ``data`` (a
    DataFrame, a pyarrow Table or a .parquet/.csv path), replacing the version's earlier
    one. Only the model's input columns are profiled when its signature names them.

    ``predictions`` are the model's outputs on ``data`` (one per row); when left out, the
    model (``model``, or the version loaded from the registry) predicts on the stored sample
    and those predictions are profiled. A model that cannot predict on the data is warned
    about and the reference is stored without predictions. ``bins`` defaults to
    ``[monitor] bins``.

    >>> ref = set_reference("churn@production", "data/train.parquet", workspace=ws)  # doctest: +SKIP
    """
    from sqlalchemy import delete, insert

    from loopml.monitoring.tables import monitor_references
    from loopml.store.clock import now_ms, to_datetime
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    version = ws.models.get(model_ref)
    frame = as_frame(data)
    frame = frame[_model_columns(version, frame)]
    if source is None and isinstance(data, (str, os.PathLike)):
        source = os.fspath(data)
    frame = _as_signed(version, frame, source)
    positions = sample_positions(len(frame), sample_rows)
    sample = frame.iloc[positions].reset_index(drop=True)
    predicted: pd.Series | None = None
    sampled_predictions: pd.Series | None = None
    if predictions is not None:
        predicted = prediction_values(predictions)
        if len(predicted) != len(frame):
            raise InvalidInput(
                f"predictions has {len(predicted)} values for {len(frame)} rows of reference "
                "data: pass the model's output on every row (or leave it out)."
            )
        sampled_predictions = predicted.iloc[positions].reset_index(drop=True)
    else:
        sampled_predictions = _predict(ws, version, model, sample)
        predicted = sampled_predictions
    chosen_bins = bins if bins is not None else _bins_setting(ws)
    profile, _matrix, _valid = _build(frame, predicted, chosen_bins)
    stored = (
        sample
        if sampled_predictions is None
        else sample.assign(**{PREDICTION: sampled_predictions})
    )
    sample_hash = ws.blobs.put_bytes(_parquet_bytes(stored))
    created = now_ms()
    row = {
        "model": version.name,
        "version": version.version,
        "profile": profile.to_json(),
        "sample_hash": sample_hash,
        "rows": len(frame),
        "source": source,
        "created_at": created,
    }

    def tx(conn: Any) -> None:
        conn.execute(
            delete(monitor_references).where(
                monitor_references.c.model == version.name,
                monitor_references.c.version == version.version,
            )
        )
        conn.execute(insert(monitor_references).values(**row))

    ws.db.transact(tx)
    created_at = to_datetime(created)
    assert created_at is not None
    return Reference(
        version.name,
        version.version,
        profile,
        len(frame),
        source,
        created_at,
        sample_hash,
        ws.blobs,
    )


def _predict(ws: Any, version: Any, model: Any, sample: pd.DataFrame) -> pd.Series | None:
    try:
        chosen = model if model is not None else ws.models.load(version.uri)
        return prediction_values(chosen.predict(sample))
    except Exception as exc:
        warnings.warn(
            f"The reference of {version.uri} is stored without a predictions profile: the "
            f"model could not predict on the reference sample ({type(exc).__name__}: {exc}). "
            "Pass predictions= to profile them.",
            LoopmlWarning,
            stacklevel=3,
        )
        return None


def get_reference(
    model: str,
    version: int,
    *,
    workspace: WorkspaceLike = None,
) -> Reference | None:
    """The stored reference of ``model`` version ``version``, or None when it has none."""
    from sqlalchemy import select

    from loopml.monitoring.tables import monitor_references
    from loopml.store.clock import to_datetime
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    with ws.db.read() as conn:
        row = conn.execute(
            select(monitor_references).where(
                monitor_references.c.model == model, monitor_references.c.version == version
            )
        ).first()
    if row is None:
        return None
    created_at = to_datetime(row.created_at)
    assert created_at is not None
    return Reference(
        model=row.model,
        version=row.version,
        profile=Profile.from_json(row.profile),
        rows=row.rows,
        source=row.source,
        created_at=created_at,
        sample_hash=row.sample_hash,
        blobs=ws.blobs,
    )
