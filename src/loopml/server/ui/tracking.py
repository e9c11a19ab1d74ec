"""The tracking pages: experiments, the runs table, a run, its artifacts, comparing runs.

The runs table asks the store for one page of runs (``ws.runs.page``: LIMIT/OFFSET in SQL,
filter and order too), so its cost follows the page size, not the experiment's size. Metric
charts fetch ``/runs/{id}/history?key=...``: the history downsampled (LTTB) to about 1,000
points on the server.
"""

from __future__ import annotations

import io
import mimetypes
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from loopml.exceptions import ArtifactNotFound, InvalidFilter, InvalidInput
from loopml.server.context import EXPERIMENT, READ
from loopml.server.http import reply
from loopml.server.ui.downsample import DEFAULT_POINTS
from loopml.server.ui.render import PageNotFound, Renderer, page, search_key, url
from loopml.server.ui.series import Series, metric_series

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from loopml.server.context import ServerContext
    from loopml.tracking.search import RunRecord

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
#: Columns of each kind shown when none were picked.
DEFAULT_COLUMNS = 5
MAX_COMPARE = 10
#: Child (nested) runs listed on a run's page.
MAX_CHILDREN = 200
#: The most bytes of an artifact a preview reads.
PREVIEW_BYTES = 256 * 1024
#: The largest table file (Parquet needs the whole file) a preview opens.
TABLE_PREVIEW_MAX = 64 * 1024 * 1024
TABLE_ROWS = 20
#: Artifacts up to this size are sent from memory (digest checked); larger ones streamed.
IN_MEMORY_BYTES = 8 * 1024 * 1024
STREAM_CHUNK = 1024 * 1024
#: Where a run keeps the git diff of its code against the commit (tracking writes it).
GIT_DIFF = "loopml/git.diff"
#: Downsampled histories of ended runs kept in memory (oldest dropped first).
SERIES_CACHE = 512
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
TEXT_SUFFIXES = {
    ".txt", ".log", ".json", ".yaml", ".yml", ".toml", ".md", ".py", ".cfg", ".ini",
    ".html", ".xml", ".sh", ".diff", ".patch", ".csv", ".tsv", ".rst", "",
}  # fmt: skip


@dataclass(frozen=True)
class Column:
    """One picked column of the runs table: ``params.lr`` or ``metrics.val loss``."""

    name: str  # as the filter language spells it, e.g. metrics.`val loss`
    kind: str  # "params" | "metrics" | "tags"
    key: str

    @classmethod
    def parse(cls, text: str) -> Column:
        kind, dot, key = text.partition(".")
        if not dot or kind not in {"params", "metrics", "tags"} or not key:
            raise InvalidFilter(
                f"Column {text!r} is not one: use params.NAME, metrics.NAME or tags.NAME."
            )
        return cls(search_key(text), kind, key)

    @property
    def label(self) -> str:
        return f"{self.kind}.{self.key}"


def order_toggle(current: list[str], column: Column) -> tuple[str, str]:
    """The order a click on ``column``'s header asks for, and the arrow shown now
    (``"↓"`` descending, ``"↑"`` ascending, ``""`` not sorted on it)."""
    first = current[0] if current else ""
    if first == f"{column.name} DESC":
        return f"{column.name} ASC", "↓"
    if first in {column.name, f"{column.name} ASC"}:
        return f"{column.name} DESC", "↑"
    return f"{column.name} DESC", ""


def default_columns(records: list[dict[str, Any]]) -> list[Column]:
    """A few metrics and params the shown runs have, when the user picked none."""
    metrics = sorted({k for r in records for k in r["metrics"]})[:DEFAULT_COLUMNS]
    params = sorted({k for r in records for k in r["params"]})[:DEFAULT_COLUMNS]
    return [Column.parse(f"metrics.{k}") for k in metrics] + [
        Column.parse(f"params.{k}") for k in params
    ]


def cell(record: dict[str, Any], column: Column) -> Any:
    return record[column.kind].get(column.key)


def child_folders(paths: list[str], folder: str) -> tuple[list[str], list[str]]:
    """The folders and files right under ``folder`` ("" = the top) among artifact ``paths``.

    >>> child_folders(["a.txt", "plots/x.png", "plots/deep/y.png"], "plots")
    (['plots/deep'], ['plots/x.png'])
    """
    prefix = f"{folder}/" if folder else ""
    folders: dict[str, None] = {}
    files: list[str] = []
    for path in paths:
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        head, slash, _ = rest.partition("/")
        if slash:
            folders[prefix + head] = None
        else:
            files.append(path)
    return sorted(folders), sorted(files)


class TrackingPages:
    """The tracking pages of one server."""

    def __init__(self, ctx: ServerContext, renderer: Renderer) -> None:
        self.ctx = ctx
        self.ws = ctx.workspace
        self.renderer = renderer
        self.series: dict[tuple[str, str, int], Series] = ctx.state.setdefault("ui.series", {})

    # -- helpers -----------------------------------------------------------------------------

    async def run_record(self, request: Request, run_id: str) -> RunRecord:
        """The run, after checking the caller may read its experiment."""
        from loopml.exceptions import RunNotFound

        try:
            record = await self.ctx.call(self.ws.runs.get, run_id)
        except RunNotFound:
            raise PageNotFound(f"No run {run_id!r} on this server.") from None
        self.ctx.access.check(request, EXPERIMENT, str(record.experiment_id), READ)
        return record

    # -- pages -------------------------------------------------------------------------------

    async def experiments(self, request: Request) -> Response:
        found = await self.ctx.call(self.ws.experiments.list)
        readable = self.ctx.access.readable(request, EXPERIMENT)
        if readable is not None:
            found = [e for e in found if str(e.id) in readable]
        return self.renderer.page("experiments.html", experiments=found, nav="experiments")

    async def runs(self, request: Request) -> Response:
        from loopml.exceptions import ExperimentNotFound
        from loopml.tracking.search import page_offset, page_token_for

        exp_id = request.path_params["experiment_id"]
        self.ctx.access.check(request, EXPERIMENT, str(exp_id), READ)
        try:
            experiment = await self.ctx.call(self.ws.experiments.get, exp_id)
        except ExperimentNotFound:
            raise PageNotFound(f"No experiment with id {exp_id} on this server.") from None
        q = request.query_params
        filter_text = q.get("filter", "").strip()
        order = [o for o in q.getlist("order") if o.strip()]
        picked = [Column.parse(c) for c in q.getlist("cols") if c.strip()]
        size_text = q.get("size", str(DEFAULT_PAGE_SIZE))
        if not size_text.isdigit() or int(size_text) not in PAGE_SIZES:
            raise InvalidInput(f"size must be one of {', '.join(map(str, PAGE_SIZES))}.")
        size = int(size_text)
        token = q.get("page") or None
        offset = page_offset(token)
        error = None
        try:
            found = await self.ctx.call(
                self.ws.runs.page,
                [exp_id],
                filter_text or None,
                order or None,
                size,
                token,
            )
            records, next_token = found.records, found.next_page_token
        except InvalidFilter as exc:
            error = str(exc)
            records, next_token = [], None
        columns = picked or default_columns(records)
        offered = sorted(
            {f"metrics.{k}" for r in records for k in r["metrics"]}
            | {f"params.{k}" for r in records for k in r["params"]}
            | {f"tags.{k}" for r in records for k in r["tags"] if not k.startswith("mlflow.")}
            | {c.label for c in columns}
        )
        here = f"/experiments/{exp_id}"
        state = {"filter": filter_text, "order": order, "cols": [c.label for c in picked]}
        if size != DEFAULT_PAGE_SIZE:
            state["size"] = str(size)
        headers = []
        for column in columns:
            new_order, arrow = order_toggle(order, column)
            headers.append((column, url(here, **{**state, "order": [new_order]}), arrow))
        attribute_headers = []
        for label, key in (("Start", "attributes.start_time"), ("Name", "attributes.name")):
            col = Column(key, "attributes", key)
            new_order, arrow = order_toggle(order, col)
            attribute_headers.append((label, url(here, **{**state, "order": [new_order]}), arrow))
        prev_url = None
        if offset > 0:
            back = max(offset - size, 0)
            prev_url = url(here, **state, page=page_token_for(back) if back else None)
        next_url = url(here, **state, page=next_token) if next_token else None
        return self.renderer.page(
            "runs.html",
            nav="experiments",
            experiment=experiment,
            records=records,
            columns=columns,
            headers=headers,
            attribute_headers=attribute_headers,
            cell=cell,
            offered=offered,
            picked={c.label for c in columns},
            filter=filter_text,
            order=order,
            size=size,
            sizes=PAGE_SIZES,
            error=error,
            first=offset + 1,
            prev_url=prev_url,
            next_url=next_url,
        )

    async def run(self, request: Request) -> Response:
        record = await self.run_record(request, request.path_params["run_id"])
        artifacts = await self.ctx.call(self.ws.runs.list_artifacts, record.id)
        children = await self.ctx.call(
            self.ws.runs.records,
            [record.experiment_id],
            f"attributes.parent_run_id = '{record.id}'",  # an id is hex: nothing to escape
            None,
            MAX_CHILDREN,
        )
        env = record.environment or {}
        git = env.get("git") or {}
        folders, files = child_folders([a.path for a in artifacts], "")
        sizes = {a.path: a.size for a in artifacts}
        diff = None
        recorded = next((a for a in artifacts if a.path == GIT_DIFF), None)
        if recorded is not None:
            head = await self.ctx.call(self._head, recorded.digest, recorded.size)
            diff = head.decode("utf-8", errors="replace")
        return self.renderer.page(
            "run.html",
            nav="experiments",
            run=record,
            env=env,
            git=git,
            folders=folders,
            files=files,
            sizes=sizes,
            artifact_count=len(artifacts),
            children=children,
            more_children=len(children) >= MAX_CHILDREN,
            diff=diff,
            diff_cut=recorded is not None and recorded.size > PREVIEW_BYTES,
        )

    async def history(self, request: Request) -> Response:
        """JSON ``{"key", "steps", "values", "total"}``: a metric's history for a chart,
        downsampled to about ``points`` (default 1,000): see :mod:`.series`."""
        record = await self.run_record(request, request.path_params["run_id"])
        key = request.query_params.get("key", "")
        if key not in record.metrics:
            raise PageNotFound(f"Run {record.id} has no metric {key!r}.")
        points_text = request.query_params.get("points", str(DEFAULT_POINTS))
        if not points_text.isdigit() or not 3 <= int(points_text) <= 10_000:
            raise InvalidInput("points must be a whole number from 3 to 10000.")
        points = int(points_text)
        cached = self.series.get((record.id, key, points))
        if cached is None:
            cached = await self.ctx.call(metric_series, self.ws.db, record.id, key, points)
            if record.status != "RUNNING":  # an ended run's history no longer changes
                self.series[(record.id, key, points)] = cached
                while len(self.series) > SERIES_CACHE:
                    self.series.pop(next(iter(self.series)))
        return reply(
            {"key": key, "steps": cached.steps, "values": cached.values, "total": cached.total}
        )

    async def artifacts(self, request: Request) -> Response:
        record = await self.run_record(request, request.path_params["run_id"])
        path = request.query_params.get("path", "").strip("/")
        listed = await self.ctx.call(self.ws.runs.list_artifacts, record.id)
        by_path = {a.path: a for a in listed}
        if path and path in by_path:
            item = by_path[path]
            preview = await self.ctx.call(self.preview, item.path, item.digest, item.size)
            return self.renderer.page(
                "artifact.html",
                nav="experiments",
                run=record,
                path=path,
                parent=posixpath.dirname(path),
                item=item,
                preview=preview,
            )
        folders, files = child_folders(list(by_path), path)
        if path and not folders and not files:
            raise PageNotFound(f"Run {record.id} has no artifact {path!r}.")
        return self.renderer.page(
            "artifacts.html",
            nav="experiments",
            run=record,
            path=path,
            parent=posixpath.dirname(path) if path else None,
            folders=folders,
            files=files,
            sizes={a.path: a.size for a in listed},
        )

    def preview(self, path: str, digest: str, size: int) -> dict[str, Any]:
        """What the artifact page shows: ``kind`` is image, table, text or none."""
        suffix = posixpath.splitext(path)[1].lower()
        if suffix in IMAGE_TYPES:
            return {"kind": "image"}
        if suffix in {".csv", ".tsv", ".parquet"}:
            if size > TABLE_PREVIEW_MAX:
                return {"kind": "none", "why": "too large to preview"}
            import pandas as pd

            data = self.ws.blobs.get_bytes(digest)
            try:
                if suffix == ".parquet":
                    import pyarrow.parquet as pq

                    table = pq.ParquetFile(io.BytesIO(data))
                    frame = (
                        table.read_row_group(0).slice(0, TABLE_ROWS).to_pandas()
                        if table.num_row_groups
                        else pd.DataFrame()
                    )
                    total = table.metadata.num_rows
                else:
                    sep = "\t" if suffix == ".tsv" else ","
                    frame = pd.read_csv(io.BytesIO(data), sep=sep, nrows=TABLE_ROWS)
                    total = None
            except Exception as exc:  # a file that is not what its name says
                return {"kind": "none", "why": f"can't read it as a table: {exc}"}
            return {
                "kind": "table",
                "columns": [str(c) for c in frame.columns],
                "rows": [[str(v) for v in row] for row in frame.itertuples(index=False)],
                "total": total,
            }
        if suffix in TEXT_SUFFIXES or size <= PREVIEW_BYTES:
            data = self._head(digest, size)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return {"kind": "none", "why": "binary file"}
            return {"kind": "text", "text": text, "cut": size > len(data)}
        return {"kind": "none", "why": "no preview for this kind of file"}

    def _head(self, digest: str, size: int) -> bytes:
        if size <= PREVIEW_BYTES:
            return self.ws.blobs.get_bytes(digest)
        location = self.ws.blobs.locate(digest)
        if location.path is not None:
            with open(location.path, "rb") as fh:
                data = fh.read(PREVIEW_BYTES)
        else:
            data = bytes(location.filesystem.cat_file(location.url, start=0, end=PREVIEW_BYTES))
        # Cut at a character boundary: drop a partial UTF-8 sequence at the end.
        for cut in range(4):
            try:
                (data[: len(data) - cut] if cut else data).decode("utf-8")
                return data[: len(data) - cut] if cut else data
            except UnicodeDecodeError:
                continue
        return data

    async def artifact_raw(self, request: Request) -> Response:
        """An artifact's bytes: images inline (sandboxed), anything else as a download."""
        from starlette.responses import Response

        record = await self.run_record(request, request.path_params["run_id"])
        path = request.query_params.get("path", "")
        listed = await self.ctx.call(self.ws.runs.list_artifacts, record.id)
        item = next((a for a in listed if a.path == path), None)
        if item is None:
            raise ArtifactNotFound(f"Run {record.id} has no artifact {path!r}.")
        if item.size > self.ctx.settings.max_artifact_bytes:
            raise InvalidInput(
                f"{path} is {item.size} bytes, over the UI's limit; download it with "
                f"`loopml runs artifacts {record.id}`."
            )
        suffix = posixpath.splitext(path)[1].lower()
        name = posixpath.basename(path)
        headers = {
            "X-Content-Type-Options": "nosniff",
            # Nothing an artifact holds runs as this site (an SVG's script, say).
            "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'",
        }
        if suffix in IMAGE_TYPES:
            media = IMAGE_TYPES[suffix]
        else:
            media = mimetypes.types_map.get(suffix, "application/octet-stream")
            if not media.startswith("text/"):
                media = "application/octet-stream"
            plain = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
            headers["Content-Disposition"] = (
                f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
            )
        if item.size <= IN_MEMORY_BYTES:  # read whole, its digest checked
            data = await self.ctx.call(self.ws.blobs.get_bytes, item.digest)
            return Response(data, media_type=media, headers=headers)
        return await self.ctx.call(self._stream, item.digest, media, headers)

    def _stream(self, digest: str, media: str, headers: dict[str, str]) -> Response:
        """A large artifact sent in chunks, never whole in memory."""
        from starlette.concurrency import iterate_in_threadpool
        from starlette.responses import FileResponse, StreamingResponse

        location = self.ws.blobs.locate(digest)
        if location.path is not None:
            return FileResponse(location.path, media_type=media, headers=headers)
        filesystem = location.filesystem

        def chunks() -> Iterator[bytes]:
            with filesystem.open(location.url, "rb") as fh:
                while block := fh.read(STREAM_CHUNK):
                    yield block

        return StreamingResponse(iterate_in_threadpool(chunks()), media_type=media, headers=headers)

    async def compare(self, request: Request) -> Response:
        ids = list(dict.fromkeys(i for i in request.query_params.getlist("runs") if i))
        if not 2 <= len(ids) <= MAX_COMPARE:
            raise InvalidInput(
                f"Pick 2 to {MAX_COMPARE} runs to compare (got {len(ids)}): tick them in an "
                "experiment's runs table."
            )
        records = [await self.run_record(request, run_id) for run_id in ids]
        param_keys = sorted({k for r in records for k in r.params})
        metric_keys = sorted({k for r in records for k in r.metrics})
        params = [
            (k, [r.params.get(k) for r in records], len({r.params.get(k) for r in records}) > 1)
            for k in param_keys
        ]
        metrics = [(k, [r.metrics.get(k) for r in records]) for k in metric_keys]
        only_diff = request.query_params.get("diff") == "1"
        series = {
            k: [
                # A run keeps its colour in every chart.
                {"label": r.name, "src": url(f"/runs/{r.id}/history", key=k), "colour": i}
                for i, r in enumerate(records)
                if k in r.metrics
            ]
            for k in metric_keys
        }
        return self.renderer.page(
            "compare.html",
            nav="experiments",
            runs=records,
            params=[p for p in params if p[2]] if only_diff else params,
            differing=sum(1 for p in params if p[2]),
            metrics=metrics,
            only_diff=only_diff,
            ids=ids,
            series=series,
        )

    def routes(self) -> list[BaseRoute]:
        from starlette.routing import Route

        wrap = page(self.renderer)
        return [
            Route("/", wrap(self.experiments), methods=["GET"], name="ui_home"),
            Route("/experiments", wrap(self.experiments), methods=["GET"]),
            Route("/experiments/{experiment_id:int}", wrap(self.runs), methods=["GET"]),
            Route("/runs/{run_id}", wrap(self.run), methods=["GET"]),
            Route("/runs/{run_id}/history", wrap(self.history), methods=["GET"]),
            Route("/runs/{run_id}/artifacts", wrap(self.artifacts), methods=["GET"]),
            Route("/runs/{run_id}/artifact", wrap(self.artifact_raw), methods=["GET"]),
            Route("/compare", wrap(self.compare), methods=["GET"]),
        ]
