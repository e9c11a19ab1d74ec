"""``loopml monitor report``: one self-contained HTML file about a deployment's monitoring
over a period, drawn from the stored windows (:mod:`loopml.monitoring.windows`), the
reference profile (:mod:`loopml.monitoring.profile`) and the alerts
(:mod:`loopml.monitoring.alerts`).

    loopml.monitoring.report.write_report("churn", "report.html", since="2026-11-24", workspace=ws)

What it shows, in this order: a summary table of every feature (and the predictions), the
highest PSI of one window first, its band coloured, beside the last window's and the pooled
period's; the alerts of the period; request count,
latency p50/p95/p99 and error rate over time; performance over time once labels land (the
confidence-based estimate drawn dashed and named an estimate); PSI over time of the worst
features; a reference-versus-current histogram per feature over the reference's frozen bins.

**Self-contained.** Inline CSS, charts as inline SVG drawn here: no script, no font, no
network request of any kind, so the file opens anywhere and can be mailed or archived.
**Small.** Only aggregates are drawn — the windows' per-bin shares, never logged rows — and
a series of more than :data:`MAX_POINTS` windows is drawn as buckets of consecutive windows
(their worst value, or their mean for performance), so a month of hourly windows over fifty
features stays well under 2 MB whatever the traffic.
**Period histograms.** The current shares of a feature over the period are its windows'
shares weighted by the window's non-null count; the period PSI is computed from them
against the reference's frozen bins. Only windows of the model version whose reference is
drawn (the latest window's) are pooled: a reference of another version has other bins.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.exceptions import NotFound

if TYPE_CHECKING:
    from loopml.monitoring.alerts import Alert
    from loopml.monitoring.profile import Reference
    from loopml.monitoring.windows import WindowResult
    from loopml.workspace import WorkspaceLike

#: A time series longer than this is drawn as buckets of consecutive windows.
MAX_POINTS = 400
#: Features drawn over time in the PSI chart (the worst of the period).
TOP_FEATURES = 6
#: Categories drawn per categorical histogram (the largest; the rest pooled).
MAX_BUCKETS = 12
#: Window warnings listed (the most frequent first).
MAX_WARNINGS = 20
PREDICTION = "__prediction__"
BAND_COLOURS = {"none": "#2e7d32", "moderate": "#e0a800", "significant": "#c62828"}
#: Colours of the lines of one chart, in order.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
REFERENCE_COLOUR, CURRENT_COLOUR = "#9e9e9e", "#1f77b4"
CLASSIFIER_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc")
REGRESSOR_METRICS = ("rmse", "mae")


class NoWindows(NotFound):
    """A report was asked for a deployment (and period) with no computed window."""


def _e(value: object) -> str:
    """Any user string (feature, model, rule, message) as HTML text or attribute."""
    return html.escape(str(value), quote=True)


def _when(moment: datetime) -> str:
    """A time as the report shows it: ISO 8601, to the minute, with its offset (UTC)."""
    return moment.astimezone(UTC).isoformat(timespec="minutes")


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# -- the period's aggregates -----------------------------------------------------------------


@dataclass
class FeatureSummary:
    """One feature over the period: its pooled current shares beside the reference's and
    what the windows measured."""

    name: str
    kind: str
    labels: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    current: list[float] = field(default_factory=list)
    counted: float = 0.0  # non-null values pooled into ``current`` (before normalising)
    psi: float | None = None  # over the period, from the pooled shares
    band: str | None = None
    worst_psi: float | None = None  # the highest of one window
    worst_band: str | None = None  # its band: what alert rules on max(psi) see
    last_psi: float | None = None
    null_rate: float | None = None
    reference_null_rate: float | None = None
    out_of_range: float | None = None
    unseen: float | None = None
    missing: bool = False  # absent from every window's logged rows


def _weighted_mean(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    total = weight = 0.0
    for value, w in zip(values, weights, strict=True):
        if value is not None and w > 0 and math.isfinite(value):
            total += value * w
            weight += w
    return total / weight if weight else None


def summarise(
    windows: Sequence[WindowResult],
    reference: Reference | None,
    bands: Sequence[float] = (0.1, 0.25),
) -> list[FeatureSummary]:
    """Every feature of the period (the predictions as ``__prediction__``), the highest PSI
    of one window first (a drift in the last hours of a week barely moves the PSI of the
    pooled week); features without a PSI last, by name. Pure: from the windows and the
    reference."""
    from loopml.monitoring.stats import psi_band

    label = f"{reference.model}/{reference.version}" if reference is not None else None
    pooled = [w for w in windows if w.status == "ok" and (label is None or w.model == label)]
    kinds: dict[str, str] = {}  # name -> kind, in the reference's order
    if reference is not None:
        kinds |= {n: f.kind for n, f in reference.profile.features.items()}
        if reference.profile.predictions is not None:
            kinds[PREDICTION] = reference.profile.predictions.kind
    # One pass over the windows: each feature's summary entries and weights, in order.
    entries: dict[str, list[tuple[Mapping[str, Any], float]]] = {}
    for w in pooled:
        for name, entry in _entries(w):
            kinds.setdefault(name, str(entry.get("kind", "numeric")))
            if not entry.get("missing"):
                entries.setdefault(name, []).append((entry, _count(w, name, entry)))
    weights = [float(w.rows) for w in pooled]
    summaries = []
    for name, kind in kinds.items():
        s = FeatureSummary(name, kind)
        profile = _profile_of(reference, name)
        if kind == "numeric":
            _pool_numeric(s, entries.get(name, []), profile)
        else:
            _pool_categorical(s, entries.get(name, []), profile)
        series = {
            metric: [w.metrics.get((name, metric)) for w in pooled]
            for metric in ("psi", "null_rate", "out_of_range", "unseen", "missing")
        }
        found = [v for v in series["psi"] if v is not None and math.isfinite(v)]
        s.worst_psi = max(found) if found else None
        s.worst_band = psi_band(s.worst_psi, bands) if s.worst_psi is not None else None
        s.last_psi = found[-1] if found else None
        s.null_rate = _weighted_mean(series["null_rate"], weights)
        s.out_of_range = _weighted_mean(series["out_of_range"], weights)
        s.unseen = _weighted_mean(series["unseen"], weights)
        s.reference_null_rate = profile.null_rate if profile is not None else None
        s.missing = bool(pooled) and all(v == 1.0 for v in series["missing"])
        _period_psi(s, bands)
        summaries.append(s)
    summaries.sort(
        key=lambda s: (s.worst_psi is None, -(s.worst_psi or 0.0), -(s.psi or 0.0), s.name)
    )
    return summaries


def _period_psi(s: FeatureSummary, bands: Sequence[float]) -> None:
    from loopml.monitoring.stats import psi, psi_band

    if s.current and s.reference and len(s.current) == len(s.reference):
        value = psi(s.reference, s.current)
        s.psi = value if math.isfinite(value) else None
        s.band = psi_band(s.psi, bands) if s.psi is not None else None


def _entries(window: WindowResult) -> list[tuple[str, Mapping[str, Any]]]:
    summary = window.summary or {}
    found = [(str(n), e) for n, e in dict(summary.get("features") or {}).items()]
    if summary.get("prediction"):
        found.append((PREDICTION, summary["prediction"]))
    return [(n, e) for n, e in found if isinstance(e, Mapping)]


def _profile_of(reference: Reference | None, name: str) -> Any:
    if reference is None:
        return None
    if name == PREDICTION:
        return reference.profile.predictions
    return reference.profile.features.get(name)


def _pool_numeric(
    s: FeatureSummary, entries: Sequence[tuple[Mapping[str, Any], float]], profile: Any
) -> None:
    """The current shares of ``s`` over the frozen bins: the windows' shares weighted by
    their non-null counts."""
    import numpy as np

    expected = [float(p) for p in profile.proportions] if profile is not None else []
    if not expected and entries:
        expected = [float(p) for p in entries[-1][0].get("reference_proportions") or ()]
    kept = [
        (shares, count)
        for entry, count in entries
        if len(shares := entry.get("current_proportions") or ()) == len(expected) and expected
    ]
    s.reference = expected
    if kept:
        matrix = np.asarray([shares for shares, _ in kept], dtype=np.float64)
        counts = np.asarray([count for _, count in kept], dtype=np.float64)
        s.counted = float(counts.sum())
        if s.counted > 0:
            s.current = [float(v) for v in counts @ matrix / s.counted]
    edges = list(profile.edges) if profile is not None else []
    s.labels = _bin_labels(edges, len(expected))


def _pool_categorical(
    s: FeatureSummary, entries: Sequence[tuple[Mapping[str, Any], float]], profile: Any
) -> None:
    """The current shares of ``s`` per category (by name: the buckets of windows differ)."""
    reference_by: dict[str, float] = {}
    current_by: dict[str, float] = {}
    for entry, count in entries:
        buckets = [str(b) for b in entry.get("buckets") or ()]
        shares = entry.get("current_proportions") or ()
        if len(buckets) != len(shares):
            continue
        for bucket, share in zip(buckets, shares, strict=True):
            current_by[bucket] = current_by.get(bucket, 0.0) + float(share) * count
        for bucket, share in zip(buckets, entry.get("reference_proportions") or (), strict=False):
            reference_by[bucket] = float(share)
        s.counted += count
    if profile is not None and not reference_by:
        reference_by = dict(profile.categories)
    buckets = list(dict.fromkeys([*reference_by, *current_by]))
    s.reference = [reference_by.get(b, 0.0) for b in buckets]
    s.current = [current_by.get(b, 0.0) / s.counted for b in buckets] if s.counted else []
    s.labels = buckets


def _count(window: WindowResult, name: str, entry: Mapping[str, Any]) -> float:
    """The non-null values of ``name`` in ``window``: its rows less its nulls."""
    rows = float(entry.get("rows") or window.rows or 0)
    null_rate = window.metrics.get((name, "null_rate"))
    if null_rate is not None and math.isfinite(null_rate):
        rows *= 1.0 - null_rate
    return max(rows, 0.0)


def _bin_labels(edges: Sequence[float], bins: int) -> list[str]:
    """``≤ e1``, ``≤ e2``, …, ``> ek``: each right-closed bin by its upper edge."""
    if len(edges) + 1 != bins:
        return [f"bin {i + 1}" for i in range(bins)]
    return [f"≤ {_num(e)}" for e in edges] + [f"> {_num(edges[-1])}" if edges else "all"]


def _shown_buckets(s: FeatureSummary) -> tuple[list[str], list[float], list[float]]:
    """A categorical feature's largest :data:`MAX_BUCKETS` buckets, the rest pooled."""
    labels, reference, current = s.labels, s.reference, s.current or [0.0] * len(s.labels)
    if len(labels) <= MAX_BUCKETS:
        return labels, reference, current
    order = sorted(range(len(labels)), key=lambda i: -max(reference[i], current[i]))
    kept, rest = order[: MAX_BUCKETS - 1], order[MAX_BUCKETS - 1 :]
    return (
        [labels[i] for i in kept] + [f"{len(rest)} others"],
        [reference[i] for i in kept] + [sum(reference[i] for i in rest)],
        [current[i] for i in kept] + [sum(current[i] for i in rest)],
    )


# -- SVG charts ------------------------------------------------------------------------------

_W, _H = 760, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 190, 16, 34


@dataclass(frozen=True)
class Series:
    """One line of a chart: ``values`` per point (None: a gap), drawn dashed if ``dashed``."""

    name: str
    values: Sequence[float | None]
    dashed: bool = False


def downsample(
    times: Sequence[datetime], values: Sequence[float | None], limit: int, how: str = "max"
) -> tuple[list[datetime], list[float | None]]:
    """At most ``limit`` points: consecutive windows pooled into one point at the first's
    time, holding their ``max`` (a spike stays visible) or ``mean``; a bucket with no value
    stays a gap.

    >>> t = [datetime(2026, 12, 1, h, tzinfo=UTC) for h in range(6)]
    >>> downsample(t, [1.0, 5.0, None, None, 2.0, 4.0], 3)[1]
    [5.0, None, 4.0]
    """
    if len(times) <= limit:
        return list(times), list(values)
    size = math.ceil(len(times) / limit)
    out_t: list[datetime] = []
    out_v: list[float | None] = []
    for i in range(0, len(times), size):
        chunk = [v for v in values[i : i + size] if v is not None and math.isfinite(v)]
        out_t.append(times[i])
        if not chunk:
            out_v.append(None)
        else:
            out_v.append(max(chunk) if how == "max" else sum(chunk) / len(chunk))
    return out_t, out_v


def _nice_max(value: float) -> float:
    """A round upper bound of an axis at or above ``value``."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def line_chart(
    title: str,
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    unit: str = "",
    lines: Sequence[tuple[float, str]] = (),
    how: str = "max",
) -> str:
    """An SVG line chart of ``series`` over ``times`` (one point per window), with
    horizontal reference ``lines`` (value, label). Empty windows are gaps."""
    pooled = len(times) > MAX_POINTS
    drawn = []
    shown_times: list[datetime] = list(times)
    for s in series:
        shown_times, values = downsample(times, s.values, MAX_POINTS, how)
        drawn.append((s, values))
    finite = [v for _, vs in drawn for v in vs if v is not None and math.isfinite(v)]
    top = _nice_max(max([*finite, *(v for v, _ in lines)], default=1.0))
    low = min(finite, default=0.0)
    bottom = -_nice_max(-low) if low < 0 else 0.0
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    first = shown_times[0].timestamp() if shown_times else 0.0
    span = (shown_times[-1].timestamp() - first) if len(shown_times) > 1 else 1.0

    def x(moment: datetime) -> float:
        return _LEFT + (moment.timestamp() - first) / span * width if span else _LEFT

    def y(value: float) -> float:
        return _TOP + (top - value) / ((top - bottom) or 1.0) * height

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{_e(title)}">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{width}" height="{height}" class="plot"/>',
    ]
    for i in range(5):
        value = bottom + (top - bottom) * i / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + width}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'class="grid"/><text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" class="tick" '
            f'text-anchor="end">{_e(_num(value))}{_e(unit)}</text>'
        )
    if shown_times:
        ticks = sorted({0, len(shown_times) // 2, len(shown_times) - 1})
        for i in ticks:
            anchor = "start" if i == 0 else ("end" if i == len(shown_times) - 1 else "middle")
            parts.append(
                f'<text x="{x(shown_times[i]):.1f}" y="{_TOP + height + 16}" class="tick" '
                f'text-anchor="{anchor}">{_e(_when(shown_times[i]))}</text>'
            )
    for value, label in lines:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + width}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'class="threshold"/><text x="{_LEFT + width - 4}" y="{y(value) - 4:.1f}" '
            f'class="tick" text-anchor="end">{_e(label)}</text>'
        )
    for n, (s, values) in enumerate(drawn):
        colour = PALETTE[n % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for segment in _segments(shown_times, values):
            if len(segment) == 1:
                (t, v) = segment[0]
                parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}"/>')
                continue
            points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in segment)
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" '
                f'stroke-width="1.8"{dash}/>'
            )
        legend_y = _TOP + 12 + 18 * n
        parts.append(
            f'<line x1="{_W - _RIGHT + 10}" x2="{_W - _RIGHT + 30}" y1="{legend_y - 4}" '
            f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2.5"{dash}/>'
            f'<text x="{_W - _RIGHT + 34}" y="{legend_y}" class="legend">{_e(_clip(s.name, 22))}'
            f"<title>{_e(s.name)}</title></text>"
        )
    parts.append("</svg>")
    note = (
        f'<p class="note">More than {MAX_POINTS} windows: each point is the '
        f"{'worst' if how == 'max' else 'mean'} of {math.ceil(len(times) / MAX_POINTS)} "
        "consecutive windows.</p>"
        if pooled
        else ""
    )
    return f"<figure><figcaption>{_e(title)}</figcaption>{''.join(parts)}{note}</figure>"


def _segments(
    times: Sequence[datetime], values: Sequence[float | None]
) -> list[list[tuple[datetime, float]]]:
    """Runs of consecutive finite values (a gap splits a line)."""
    segments: list[list[tuple[datetime, float]]] = []
    current: list[tuple[datetime, float]] = []
    for t, v in zip(times, values, strict=True):
        if v is None or not math.isfinite(v):
            if current:
                segments.append(current)
            current = []
        else:
            current.append((t, v))
    if current:
        segments.append(current)
    return segments


def _clip(text: str, length: int = 18) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def histogram(labels: Sequence[str], reference: Sequence[float], current: Sequence[float]) -> str:
    """An SVG bar chart: per bin (or category) the reference share beside the current one."""
    w, h, left, bottom, top = 360, 190, 36, 58, 10
    width, height = w - left - 8, h - top - bottom
    peak = _nice_max(max([*reference, *current], default=0.0) or 1.0)
    n = max(len(labels), 1)
    slot = width / n
    bar = max(slot * 0.38, 1.0)
    parts = [
        f'<svg class="hist" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">',
        f'<line x1="{left}" x2="{left + width}" y1="{top + height}" y2="{top + height}" '
        'class="axis"/>',
        f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">'
        f"{peak * 100:.0f}%</text>",
        f'<text x="{left - 4}" y="{top + height}" class="tick" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        x0 = left + i * slot + slot * 0.1
        for share, colour, offset in (
            (reference[i] if i < len(reference) else 0.0, REFERENCE_COLOUR, 0.0),
            (current[i] if i < len(current) else 0.0, CURRENT_COLOUR, bar),
        ):
            tall = share / peak * height
            parts.append(
                f'<rect x="{x0 + offset:.1f}" y="{top + height - tall:.1f}" width="{bar:.1f}" '
                f'height="{tall:.1f}" fill="{colour}"><title>{_e(label)}: '
                f"{share * 100:.1f}%</title></rect>"
            )
        cx = left + (i + 0.5) * slot
        parts.append(
            f'<text class="tick" transform="translate({cx:.1f},{top + height + 10}) rotate(-40)" '
            f'text-anchor="end">{_e(_clip(label, 12))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- the page --------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid
#d8dce3;padding-bottom:4px}
.meta{color:#5a6372;margin:0 0 6px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e6eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.band{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-size:12px}
.band-none{background:#2e7d32}.band-moderate{background:#e0a800;color:#222}
.band-significant{background:#c62828}.band-na{background:#9e9e9e}
.sev-critical,.st-firing{color:#c62828;font-weight:600}.sev-warning{color:#a66f00}
figure{margin:0 0 16px;background:#fff;border:1px solid #e3e6eb;border-radius:6px;
padding:8px 10px}
figcaption{font-weight:600;margin-bottom:4px}
.grid-h{display:flex;flex-wrap:wrap;gap:12px}.grid-h figure{flex:0 0 auto}
svg text{font:11px system-ui,sans-serif;fill:#3b4452}
svg .plot{fill:#fcfcfd;stroke:#d8dce3}svg .grid{stroke:#eceef2}
svg .axis{stroke:#8a93a3}svg .threshold{stroke:#c62828;stroke-dasharray:3 3}
svg .legend{font-size:12px}
.note{color:#5a6372;font-size:12px;margin:4px 0}
.key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
ul.warnings{font-size:12px;color:#5a6372}
""".strip()


@dataclass(frozen=True)
class ReportData:
    """Everything a report draws, read from the store by :func:`collect`."""

    deployment: str
    windows: Sequence[WindowResult]
    reference: Reference | None
    alerts: Sequence[Alert]
    bands: tuple[float, float] = (0.1, 0.25)
    since: datetime | None = None
    until: datetime | None = None


def collect(
    deployment: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    workspace: WorkspaceLike = None,
) -> ReportData:
    """Read what a report of ``deployment`` over [``since``, ``until``) draws; :class:`NoWindows`
    when no window of it was computed in that period."""
    from loopml.monitoring.alerts import list_alerts
    from loopml.monitoring.profile import get_reference
    from loopml.monitoring.windows import _moment, list_windows
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    ws.deployments.get(deployment)  # DeploymentNotFound, with its hint
    begin, finish = _moment(since, "since"), _moment(until, "until")
    windows = list_windows(deployment, since=begin, until=finish, workspace=ws)
    if not windows:
        period = ""
        if begin is not None or finish is not None:
            period = (
                f" from {_when(begin) if begin else 'the start'}"
                f" until {_when(finish) if finish else 'now'}"
            )
        raise NoWindows(
            f"No monitoring windows computed for deployment {deployment!r}{period}: run "
            f"`loopml monitor run {deployment}` first"
            + (", or widen --since/--until." if period else ".")
        )
    reference = None
    for w in reversed(windows):
        if w.model:
            name, _, number = w.model.rpartition("/")
            if number.isdigit():
                reference = get_reference(name, int(number), workspace=ws)
            break
    start, end = windows[0].start, windows[-1].end
    alerts = [
        a
        for a in list_alerts(deployment=deployment, workspace=ws)
        if a.window_end > start and a.window_start < end
    ]
    alerts.sort(key=lambda a: (a.window_start, a.id))
    settings = ws.settings.monitor
    bands = (float(settings.psi_bands[0]), float(settings.psi_bands[1]))
    return ReportData(deployment, windows, reference, alerts, bands, begin, finish)


def render(data: ReportData, *, generated: datetime | None = None) -> str:
    """The report's HTML from ``data`` (pure: no store, no clock unless ``generated`` is
    None)."""
    windows = data.windows
    times = [w.start for w in windows]
    features = summarise(windows, data.reference, data.bands)
    at = generated or datetime.now(UTC)
    empty = sum(w.status == "empty" for w in windows)
    models = sorted({w.model for w in windows if w.model})
    reference = data.reference
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>Monitoring report: {_e(data.deployment)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>Monitoring report: {_e(data.deployment)}</h1>",
        f'<p class="meta">{_e(_when(windows[0].start))} to {_e(_when(windows[-1].end))} · '
        f"{len(windows)} window(s) of {_e(_duration(windows[0]))}"
        + (f", {empty} empty (no traffic)" if empty else "")
        + f" · {sum(w.rows for w in windows):,} rows monitored · "
        f"generated {_e(_when(at))}</p>",
        '<p class="meta">Model version(s): '
        + (", ".join(_e(m) for m in models) or "none")
        + " · reference: "
        + (
            f"{_e(reference.model)}/{reference.version} ({reference.rows:,} rows"
            + (f", from {_e(reference.source)}" if reference.source else "")
            + ")"
            if reference is not None
            else "none stored (drift needs one: `loopml monitor set-reference`)"
        )
        + "</p>",
    ]
    parts.append(_summary_table(features, data.bands))
    parts.append(_alerts_section(data.alerts))
    parts.append(_operations_section(times, windows))
    parts.append(_performance_section(times, windows))
    parts.append(_psi_section(times, windows, features, data.bands))
    parts.append(_histograms_section(features))
    parts.append(_warnings_section(windows))
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p)


def _duration(window: WindowResult) -> str:
    seconds = int((window.end - window.start).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _band(band: str | None) -> str:
    if band is None:
        return '<span class="band band-na">n/a</span>'
    return f'<span class="band band-{_e(band)}">{_e(band)}</span>'


def _feature_name(name: str) -> str:
    return "(predictions)" if name == PREDICTION else name


def _summary_table(features: Sequence[FeatureSummary], bands: Sequence[float]) -> str:
    rows = []
    for s in features:
        if s.missing:
            status = '<span class="band band-na">missing from the logs</span>'
        else:
            status = _band(s.worst_band)
        quality = s.out_of_range if s.kind == "numeric" else s.unseen
        rows.append(
            f"<tr><td>{_e(_feature_name(s.name))}</td><td>{_e(s.kind)}</td>"
            f'<td class="n">{_num(s.worst_psi)}</td><td>{status}</td>'
            f'<td class="n">{_num(s.last_psi)}</td><td class="n">{_num(s.psi)}</td>'
            f'<td class="n">{_pct(s.null_rate)} <span class="note">(ref '
            f"{_pct(s.reference_null_rate)})</span></td>"
            f'<td class="n">{_pct(quality)}</td></tr>'
        )
    if not rows:
        return (
            "<h2>Drift summary</h2><p>No feature drift was computed in this period (no "
            "reference profile, or no monitored rows).</p>"
        )
    return (
        "<h2>Drift summary</h2>"
        '<p class="note">Worst first: the highest PSI of one window against the reference\'s '
        f"frozen bins, and its band (none below {_num(bands[0])}, moderate to "
        f"{_num(bands[1])}, significant above); the last window's; the whole period's, its "
        "windows pooled (the histograms below). Out of range: numeric values outside the "
        "reference's [min, max]; unseen: categories the reference never saw.</p>"
        "<table><thead><tr><th>feature</th><th>kind</th><th>worst window PSI</th><th>band</th>"
        "<th>last window PSI</th><th>period PSI</th><th>null rate</th>"
        "<th>out of range / unseen</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value * 100:.1f}%"


def _alerts_section(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return "<h2>Alerts</h2><p>No alert fired in this period.</p>"
    rows = "".join(
        f"<tr><td>{a.id}</td><td>{_e(a.rule)}</td>"
        f'<td class="sev-{_e(a.severity)}">{_e(a.severity)}</td>'
        f'<td class="st-{_e(a.status)}">{_e(a.status)}</td>'
        f"<td>{_e(_when(a.window_start))} – {_e(_when(a.window_end))}</td>"
        f"<td>{_e(_when(a.fired_at))}</td>"
        f"<td>{_e(_when(a.resolved_at)) if a.resolved_at else ''}</td>"
        f"<td>{_e(a.message)}</td></tr>"
        for a in alerts
    )
    return (
        f"<h2>Alerts ({len(alerts)})</h2><table><thead><tr><th>id</th><th>rule</th>"
        "<th>severity</th><th>status</th><th>window</th><th>fired</th><th>resolved</th>"
        f"<th>message</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _series(windows: Sequence[WindowResult], metric: str, feature: str = "") -> list[float | None]:
    return [_finite(w.value(metric, feature)) for w in windows]


def _has(values: Sequence[float | None]) -> bool:
    return any(v is not None for v in values)


def _operations_section(times: Sequence[datetime], windows: Sequence[WindowResult]) -> str:
    requests = _series(windows, "requests")
    latency = [
        Series(name, values)
        for name in ("p50_ms", "p95_ms", "p99_ms")
        if _has(values := _series(windows, name))
    ]
    errors = _series(windows, "error_rate")
    parts = ["<h2>Traffic, latency and errors</h2>"]
    if not (_has(requests) or latency or _has(errors)):
        return parts[0] + "<p>No request was answered in this period.</p>"
    charts = []
    if _has(requests):
        charts.append(line_chart("Requests per window", times, [Series("requests", requests)]))
    if latency:
        charts.append(line_chart("Latency (ms)", times, latency, unit=""))
    if _has(errors):
        charts.append(
            line_chart(
                "Error rate",
                times,
                [Series("error rate", [None if v is None else v for v in errors])],
            )
        )
    invalid = _series(windows, "invalid_rows")
    if _has(invalid) and any(v for v in invalid):
        charts.append(
            line_chart(
                "Rows violating the model's signature", times, [Series("invalid rows", invalid)]
            )
        )
    return parts[0] + "".join(charts)


def _performance_section(times: Sequence[datetime], windows: Sequence[WindowResult]) -> str:
    head = "<h2>Performance</h2>"
    measured = [
        Series(name, values)
        for name in CLASSIFIER_METRICS
        if _has(values := _series(windows, name))
    ]
    estimate = _series(windows, "estimated_accuracy")
    if _has(estimate):
        measured.append(Series("accuracy (estimate)", estimate, dashed=True))
    errors = [
        Series(name, values) for name in REGRESSOR_METRICS if _has(values := _series(windows, name))
    ]
    r2 = _series(windows, "r2")
    charts = []
    if measured:
        charts.append(line_chart("Classification", times, measured, how="mean"))
        if _has(estimate):
            charts.append(
                '<p class="note">The dashed line is an <strong>estimate</strong> from the '
                "model's own confidence (CBPE), shown while labels lag; it is not measured "
                "against labels.</p>"
            )
    if errors:
        charts.append(line_chart("Regression error (labelled windows)", times, errors, how="mean"))
    if _has(r2):
        charts.append(line_chart("R²", times, [Series("r2", r2)], how="mean"))
    drop = _series(windows, "accuracy_drop")
    if _has(drop):
        charts.append(
            line_chart(
                "Accuracy drop (offline minus live)",
                times,
                [Series("accuracy drop", drop)],
            )
        )
    labels = _series(windows, "labels")
    if any(labels):
        charts.append(line_chart("Labels joined per window", times, [Series("labels", labels)]))
    if not charts:
        return head + (
            "<p>No labels have landed for this period yet: performance appears once labels "
            "arrive (<code>POST /feedback</code> or <code>loopml labels ingest</code>).</p>"
        )
    return head + "".join(charts)


def _psi_section(
    times: Sequence[datetime],
    windows: Sequence[WindowResult],
    features: Sequence[FeatureSummary],
    bands: Sequence[float],
) -> str:
    top = [s for s in features if s.name != PREDICTION and s.worst_psi is not None]
    top.sort(key=lambda s: (-(s.worst_psi or 0.0), s.name))
    series = [Series(s.name, _series(windows, "psi", s.name)) for s in top[:TOP_FEATURES]]
    prediction = _series(windows, "psi", PREDICTION)
    if _has(prediction):
        series.append(Series("(predictions)", prediction, dashed=True))
    if not series:
        return ""
    lines = [(float(bands[0]), "moderate"), (float(bands[1]), "significant")]
    return "<h2>PSI over time</h2>" + line_chart(
        f"PSI per window: the {min(len(top), TOP_FEATURES)} worst feature(s)"
        + (" and the predictions" if _has(prediction) else ""),
        times,
        series,
        lines=lines,
    )


def _histograms_section(features: Sequence[FeatureSummary]) -> str:
    figures = []
    for s in features:
        if s.missing or not s.reference or not s.counted:
            continue  # nothing to draw beside the reference
        if s.kind == "numeric":
            labels, reference, current = s.labels, s.reference, s.current
        else:
            labels, reference, current = _shown_buckets(s)
        caption = (
            f"{_e(_feature_name(s.name))} · period PSI {_num(s.psi)} {_band(s.band)}"
            f' <span class="note">({s.counted:,.0f} values)</span>'
        )
        figures.append(
            f"<figure><figcaption>{caption}</figcaption>"
            f"{histogram(labels, reference, current or [0.0] * len(labels))}</figure>"
        )
    if not figures:
        return ""
    return (
        "<h2>Reference vs current</h2>"
        f'<p class="note key"><span style="background:{REFERENCE_COLOUR}"></span>reference'
        f'<span style="background:{CURRENT_COLOUR}"></span>current (the whole period), share '
        "of non-null values per frozen reference bin (numeric) or category.</p>"
        f'<div class="grid-h">{"".join(figures)}</div>'
    )


def _warnings_section(windows: Sequence[WindowResult]) -> str:
    counts: dict[str, int] = {}
    for w in windows:
        for warning in w.warnings:
            counts[warning] = counts.get(warning, 0) + 1
    if not counts:
        return ""
    shown = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_WARNINGS]
    items = "".join(f"<li>{_e(text)} ({n} window(s))</li>" for text, n in shown)
    more = len(counts) - len(shown)
    return f'<h2>Window warnings</h2><ul class="warnings">{items}</ul>' + (
        f'<p class="note">and {more} more.</p>' if more > 0 else ""
    )


# -- entry points ----------------------------------------------------------------------------


def render_report(
    deployment: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    workspace: WorkspaceLike = None,
) -> str:
    """The monitoring report of ``deployment`` over [``since``, ``until``) as one
    self-contained HTML page; :class:`NoWindows` when nothing was computed there yet."""
    return render(collect(deployment, since=since, until=until, workspace=workspace))


def write_report(
    deployment: str,
    path: str | os.PathLike[str],
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    workspace: WorkspaceLike = None,
) -> Path:
    """Write :func:`render_report` to ``path`` atomically (a reader never sees half a file);
    the path written."""
    return write_text(
        path, render_report(deployment, since=since, until=until, workspace=workspace)
    )


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8) through a temporary file renamed into place."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a report is for sharing
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
