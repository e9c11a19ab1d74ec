"""Online evaluation: a share of the gateway's traffic judged for context relevance,
groundedness and answer relevance, off the response path, as time series with alerts.

    [gateway.online_eval]
    sample = 0.1            # a tenth of the chat requests (chosen by a hash of the request id)
    judge_model = "judge"   # a model alias of the same gateway

How it runs:

1. when the gateway logs an answered chat request (status 200, with an answer text), it
   offers it to the :class:`OnlineEvaluator`, which keeps it when :func:`sampled` says so
   (deterministic by request id) — an O(1) hand-over that never blocks nor raises: beyond
   ``max_queue`` waiting requests one is dropped and counted;
2. on a thread and event loop of its own, after ``delay_s`` (the application's retrieval
   span is stored by then), the evaluator reads the retrieval span(s) of the request's
   trace: the question is the span's query (else the last user message), the context is the
   retrieved documents' texts (``text`` of a document, see :mod:`loopml.llm.rag.spans`),
   else the messages the model was sent;
3. each evaluator's judge prompt (:mod:`loopml.llm.rag.judges`, or one named in
   ``prompts``) is called through the gateway itself, tagged ``loopml:online-eval`` (never
   sampled; its cost is in the request log), and one row per (request, evaluator) is
   upserted into ``llm_online_evals``: ``ok`` (a score), ``judge_error`` (an answer with no
   verdict: never a pass), ``error`` (the judge could not be reached: a warning, nothing
   raised) or ``skipped`` (context relevance without a retrieval span);
4. when a window has closed, :func:`roll_windows` writes the closed windows as monitoring
   windows of ``llm:<route>`` and ``rag:<index>`` (mean scores and the count evaluated)
   and evaluates the ``[[monitor.alerts]]`` rules over them.

:func:`online_series` reads the time series back (``loopml rag online`` prints it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from loopml.llm.config import OnlineEvalConfig
    from loopml.llm.gateway import Gateway
    from loopml.llm.rag.spans import Retrieval
    from loopml.monitoring.alerts import AlertChange
    from loopml.monitoring.rules import AlertRule
    from loopml.monitoring.windows import WindowResult
    from loopml.workspace import Workspace

log = logging.getLogger("loopml.llm")

#: The tag of the judges' own requests: never sampled.
TAG = "loopml:online-eval"
#: The gateway endpoints whose requests are sampled.
ENDPOINTS = frozenset({"chat", "messages"})
#: Statuses of an evaluation row.
OK, JUDGE_ERROR, ERROR, SKIPPED = "ok", "judge_error", "error", "skipped"
#: Judge calls in flight at once, per gateway.
CONCURRENCY = 4
#: Seconds a judge prompt's resolution (a label's target) is reused.
PROMPT_TTL = 60.0
#: Seconds :meth:`OnlineEvaluator.close` waits for the evaluations in flight.
CLOSE_TIMEOUT = 10.0
#: Windows the worker re-reads when one closes (evaluations land after their window ends).
ROLL_LOOKBACK = 3
#: The metric counting the requests evaluated in a window.
EVALUATED = "evaluated"


def sampled(request_id: str, share: float) -> bool:
    """Whether the request ``request_id`` is in the sampled ``share`` (0 to 1): a hash of the
    id, so the choice is the same in every replica and on every replay.

    >>> sampled("req_1", 0.0), sampled("req_1", 1.0)
    (False, True)
    """
    if share <= 0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


@dataclass(frozen=True)
class _Sampled:
    """What the evaluator keeps of a sampled request."""

    request_id: str
    trace_id: str | None
    route: str
    prompt: str | None
    created_at: int
    messages: Sequence[Any]
    answer: str
    key_id: str | None = None  # the virtual key it was made with
    team: str | None = None


@dataclass(frozen=True)
class _Context:
    question: str
    context: str
    retrieval: Retrieval | None


class OnlineEvaluator:
    """The gateway's online evaluation (see the module): :meth:`offer` on the request path,
    the judging on a thread of its own, started on the first sampled request."""

    def __init__(self, gateway: Gateway, config: OnlineEvalConfig) -> None:
        self.gateway = gateway
        self.config = config
        self.dropped = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._hurry: asyncio.Event | None = None
        self._limit: asyncio.Semaphore | None = None
        self._prompts: dict[str, tuple[float, str, tuple[str, ...]]] = {}
        self._rolled: int | None = None  # start (ms) of the window last rolled
        self._rolling = False
        self._closed = False

    def configure(self, config: OnlineEvalConfig) -> None:
        """Use ``config`` from now on (a reload); requests already sampled are judged under
        the new one."""
        if config != self.config:
            self.config = config
            self._prompts = {}

    @property
    def pending(self) -> int:
        """Sampled requests waiting or being judged."""
        return self._pending

    # -- the request path --------------------------------------------------------------------

    def offer(
        self,
        *,
        request_id: str,
        endpoint: str,
        status: int,
        tags: Sequence[str],
        route: str,
        prompt: str | None,
        trace_id: str | None,
        created_at: int,
        body: Any,
        response: Any,
        key_id: str | None = None,
        team: str | None = None,
    ) -> bool:
        """Keep a logged request for judging when it is sampled; whether it was kept. Never
        raises, never blocks. ``key_id`` and ``team``: the virtual key it was made with (its
        context is read only from retrieval spans that key or its team sent)."""
        config = self.config
        try:
            if (
                not config.active
                or status != 200
                or endpoint not in ENDPOINTS
                or TAG in tags
                or (config.routes and route not in config.routes)
                or not sampled(request_id, config.sample)
            ):
                return False
            answer = _answer(response)
            messages = body.get("messages") if isinstance(body, dict) else None
            if not answer or not isinstance(messages, list):
                return False
            with self._lock:
                if self._closed:
                    return False
                if self._pending >= config.max_queue:
                    self.dropped += 1
                    self.gateway.metrics.online_eval_dropped()
                    return False
                self._pending += 1
                loop = self._loop if self._loop is not None else self._start()
            item = _Sampled(
                request_id, trace_id, route, prompt, created_at, messages, answer, key_id, team
            )
            # A context of its own: the judges' calls start traces of their own rather than
            # nesting under the judged request's (whose cost they would inflate).
            loop.call_soon_threadsafe(self._spawn, item, context=contextvars.Context())
            return True
        except Exception:  # the request path never pays for the evaluation
            log.exception("Could not queue request %s for online evaluation", request_id)
            return False

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="loopml-online-eval", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        return loop

    # -- the worker (on the evaluator's loop) ---------------------------------------------------

    def _spawn(self, item: _Sampled) -> None:
        task = asyncio.get_running_loop().create_task(self._evaluate(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _evaluate(self, item: _Sampled) -> None:
        from loopml.llm.gateway import INTERNAL_CALL

        INTERNAL_CALL.set(True)  # this task's calls need no virtual key
        if self._hurry is None:
            self._hurry = asyncio.Event()
        if self._limit is None:
            self._limit = asyncio.Semaphore(CONCURRENCY)
        try:
            if self.config.delay_s > 0 and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self.config.delay_s)
            async with self._limit:
                rows = await self._judge(item)
                await asyncio.to_thread(write_rows, self.gateway.workspace, rows)
            for row in rows:
                self.gateway.metrics.online_eval(row["evaluator"], row["status"])
            await self._roll_if_closed()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Online evaluation of request %s failed", item.request_id)
        finally:
            with self._lock:
                self._pending -= 1

    async def _judge(self, item: _Sampled) -> list[dict[str, Any]]:
        config = self.config
        ws = self.gateway.workspace
        found = await asyncio.to_thread(_context, ws, item)
        retrieval = found.retrieval
        rows = []
        for kind in config.evaluators:
            row: dict[str, Any] = {
                "request_id": item.request_id,
                "evaluator": kind,
                "trace_id": item.trace_id,
                "route": item.route,
                "prompt": item.prompt,
                "rag_index": retrieval.index if retrieval is not None else None,
                "index_version": retrieval.index_version if retrieval is not None else None,
                "status": SKIPPED,
                "score": None,
                "passed": None,
                "reason": None,
                "judge_request_id": None,
                "judge_cost_usd": 0.0,
                "request_at": item.created_at,
            }
            if kind == "context_relevance" and retrieval is None:
                row["reason"] = "no retrieval span in the request's trace"
            else:
                row.update(await self._ask(kind, found, item))
            row["evaluated_at"] = int(time.time() * 1000)
            rows.append(row)
        return rows

    async def _ask(self, kind: str, found: _Context, item: _Sampled) -> dict[str, Any]:
        from loopml.llm.errors import GatewayError
        from loopml.llm.rag.judges import parse_rag_verdict, rag_variables
        from loopml.llm.stages import answer_text

        config = self.config
        try:
            ref, wanted = await self._prompt(kind)
            reply = await self.gateway.achat(
                {
                    "model": config.judge_model,
                    "prompt": ref,
                    "variables": rag_variables(
                        wanted, question=found.question, context=found.context, answer=item.answer
                    ),
                    "cache": False,
                },
                headers={"x-loopml-tags": TAG},
            )
        except (GatewayError, OSError, ValueError) as exc:
            log.warning(
                "Online evaluation: the %s judge of request %s could not be called: %s",
                kind,
                item.request_id,
                exc,
            )
            return {"status": ERROR, "reason": f"the judge's call failed: {exc}"}
        except Exception as exc:  # a judge prompt that doesn't exist, a store that is down
            log.warning("Online evaluation: the %s judge could not run: %s", kind, exc)
            return {"status": ERROR, "reason": f"the judge could not run: {exc}"}
        text = answer_text(reply.body) or ""
        judged = {"judge_request_id": reply.request_id, "judge_cost_usd": float(reply.cost_usd)}
        verdict = parse_rag_verdict(kind, text, config.threshold)
        if verdict is None:
            return {
                **judged,
                "status": JUDGE_ERROR,
                "reason": f"no verdict in the judge's answer {text[:80]!r}",
            }
        return {
            **judged,
            "status": OK,
            "score": verdict.score,
            "passed": verdict.passed,
            "reason": verdict.reason,
        }

    async def _prompt(self, kind: str) -> tuple[str, tuple[str, ...]]:
        """The judge prompt of ``kind`` as NAME/VERSION and its variables (a label's target
        is read again after :data:`PROMPT_TTL` seconds)."""
        found = self._prompts.get(kind)
        if found is not None and time.monotonic() - found[0] < PROMPT_TTL:
            return found[1], found[2]
        ref, variables = await asyncio.to_thread(self._resolve, kind)
        self._prompts[kind] = (time.monotonic(), ref, variables)
        return ref, variables

    def _resolve(self, kind: str) -> tuple[str, tuple[str, ...]]:
        from loopml.llm.prompts import get_prompt
        from loopml.llm.rag.judges import rag_judge_ref

        ws = self.gateway.workspace
        ref = self.config.prompts.get(kind) or rag_judge_ref(kind, ws)
        version = get_prompt(ref, workspace=ws)
        return version.ref, version.variables

    async def _roll_if_closed(self) -> None:
        """Roll the windows once per closed window (at most one roll at a time)."""
        from loopml.monitoring.windows import align, parse_window

        size = parse_window(self.config.window)
        current = int(align(datetime.now(UTC), size).timestamp() * 1000)
        if self._rolled == current or self._rolling:
            return
        self._rolled, self._rolling = current, True
        try:
            await asyncio.to_thread(
                roll_windows,
                self.gateway.workspace,
                window=self.config.window,
                days=size.total_seconds() * ROLL_LOOKBACK / 86400,
            )
        except Exception:
            log.exception("Online evaluation: could not roll the windows")
        finally:
            self._rolling = False

    async def _drain(self, timeout: float | None) -> bool:
        """Judge what waits now (no more delay) and wait for it; whether all finished."""
        if self._hurry is None:
            self._hurry = asyncio.Event()
        self._hurry.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while self._tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                await asyncio.wait(list(self._tasks), timeout=left)
            return True
        finally:
            self._hurry.clear()

    # -- flushing and closing ----------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Judge every request sampled so far now (without waiting ``delay_s``) and wait
        until their rows are written; whether all were within ``timeout`` seconds. From any
        thread but the evaluator's own."""
        loop = self._loop
        if loop is None:
            return True
        future = asyncio.run_coroutine_threadsafe(self._drain(timeout), loop)
        return future.result()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Judge what is queued (up to ``timeout`` seconds), cancel the rest, stop the
        thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            finished = asyncio.run_coroutine_threadsafe(self._drain(timeout), loop).result()
            if not finished:
                log.warning(
                    "Online evaluation: %d sampled request(s) not judged at close",
                    len(self._tasks),
                )
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            if not loop.is_running():
                loop.close()

    async def _stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for provider in self.gateway.providers.values():  # this loop's connections
            with contextlib.suppress(Exception):
                await provider.aclose()


def _answer(response: Any) -> str | None:
    """The answer's text: a ``chat.completion`` body, or what a stream's log line keeps."""
    if not isinstance(response, Mapping):
        return None
    if "choices" in response:
        from loopml.llm.stages import answer_text

        return answer_text(response)
    content = response.get("content")
    return content if isinstance(content, str) else None


def _text(content: Any) -> str:
    """A message's text (its text parts, for a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", "")) if isinstance(part, Mapping) else str(part)
            for part in content
            if not isinstance(part, Mapping) or part.get("type", "text") == "text"
        ]
        return "\n".join(p for p in parts if p)
    return ""


def _context(ws: Workspace, item: _Sampled) -> _Context:
    """The question and context of a sampled request: from its trace's retrieval span(s)
    when there are any, else from its messages."""
    from loopml.llm.rag.spans import stored_retrievals

    found = stored_retrievals(ws, trace_id=item.trace_id) if item.trace_id else []
    # Not a span another tenant sent into this trace (trace ids travel in headers).
    retrievals = [r for r in found if r.sent_for(item.key_id, item.team)]
    if len(retrievals) < len(found):
        log.warning(
            "Request %s: %d retrieval span(s) in its trace were sent by another key; not used "
            "as its context.",
            item.request_id,
            len(found) - len(retrievals),
        )
    messages = [m for m in item.messages if isinstance(m, Mapping)]
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    question = next((r.query for r in retrievals if r.query), None) or (users[-1] if users else "")
    texts = [d.text for r in retrievals for d in r.documents if d.text]
    if texts:
        context = "\n\n".join(texts)
    else:
        context = "\n\n".join(t for m in messages if (t := _text(m.get("content"))))
    return _Context(question, context, retrievals[0] if retrievals else None)


def write_rows(workspace: WorkspaceLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Upsert evaluation rows into ``llm_online_evals`` (one per request and evaluator: a
    request judged again replaces its rows)."""
    from loopml.llm.tables import llm_online_evals as t

    if not rows:
        return
    ws = resolve_workspace(workspace)

    def tx(conn: Any) -> None:
        for row in rows:
            conn.execute(
                delete(t).where(
                    t.c.request_id == row["request_id"], t.c.evaluator == row["evaluator"]
                )
            )
        conn.execute(insert(t), [dict(row) for row in rows])

    ws.db.transact(tx)


# -- time series -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnlinePoint:
    """One window of one evaluator: how many requests were judged (``count``, status
    ``ok``), their mean score and pass rate, and the judge errors and failed calls."""

    start: datetime
    end: datetime
    evaluator: str
    count: int
    mean_score: float | None
    pass_rate: float | None
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "evaluator": self.evaluator,
            "count": self.count,
            "mean_score": self.mean_score,
            "pass_rate": self.pass_rate,
            "errors": self.errors,
        }


@dataclass
class _Bucket:
    scores: list[float] = field(default_factory=list)
    passed: int = 0
    errors: int = 0
    requests: set[str] = field(default_factory=set)


def _moment(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        from loopml.exceptions import InvalidInput

        raise InvalidInput(f"now={now!r} has no time zone: pass an aware datetime.")
    return now.astimezone(UTC)


def _rows(
    ws: Workspace,
    since_ms: int,
    until_ms: int | None,
    route: str | None = None,
    index: str | None = None,
) -> list[Any]:
    from loopml.llm.tables import llm_online_evals as t

    stmt = select(
        t.c.request_id,
        t.c.evaluator,
        t.c.route,
        t.c.rag_index,
        t.c.status,
        t.c.score,
        t.c.passed,
        t.c.request_at,
    ).where(t.c.request_at >= since_ms)
    if until_ms is not None:
        stmt = stmt.where(t.c.request_at < until_ms)
    if route is not None:
        stmt = stmt.where(t.c.route == route)
    if index is not None:
        stmt = stmt.where(t.c.rag_index == index)
    with ws.db.read() as conn:
        return list(conn.execute(stmt))


def online_series(
    route: str | None = None,
    index: str | None = None,
    *,
    days: float = 7,
    window: str = "1h",
    now: datetime | None = None,
    workspace: WorkspaceLike = None,
) -> list[OnlinePoint]:
    """The online evaluations of the last ``days`` per ``window`` and evaluator (of one
    model alias and/or one index when given), oldest first; windows with no evaluation are
    left out. The window still open is included (it may grow).

    >>> [p.to_dict() for p in online_series(index="docs", days=1)]   # doctest: +SKIP
    [{'start': '2026-12-01T14:00:00+00:00', 'evaluator': 'groundedness', 'count': 12, …}]
    """
    from loopml.llm.rag.judges import KINDS
    from loopml.monitoring.windows import align, parse_window

    ws = resolve_workspace(workspace)
    size = parse_window(window)
    at = _moment(now)
    since = align(at - timedelta(days=days), size)
    size_ms = int(size.total_seconds() * 1000)
    buckets: dict[tuple[int, str], _Bucket] = {}
    for row in _rows(ws, _ms(since), None, route, index):
        start = int(row.request_at) - int(row.request_at) % size_ms
        bucket = buckets.setdefault((start, row.evaluator), _Bucket())
        if row.status == OK and row.score is not None:
            bucket.scores.append(float(row.score))
            bucket.passed += bool(row.passed)
        elif row.status in (JUDGE_ERROR, ERROR):
            bucket.errors += 1
    order = {kind: i for i, kind in enumerate(KINDS)}
    points = []
    for (start, evaluator), bucket in sorted(
        buckets.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][1])
    ):
        count = len(bucket.scores)
        if not count and not bucket.errors:
            continue  # skipped only
        points.append(
            OnlinePoint(
                start=_datetime(start),
                end=_datetime(start + size_ms),
                evaluator=evaluator,
                count=count,
                mean_score=sum(bucket.scores) / count if count else None,
                pass_rate=bucket.passed / count if count else None,
                errors=bucket.errors,
            )
        )
    return points


# -- monitoring windows and alerts ---------------------------------------------------------------


@dataclass(frozen=True)
class Rolled:
    """What :func:`roll_windows` wrote (windows new or changed) and the alerts it fired or
    resolved."""

    windows: list[WindowResult]
    alerts: list[AlertChange]


def roll_windows(
    workspace: WorkspaceLike = None,
    *,
    now: datetime | None = None,
    window: str = "1h",
    days: float = 7,
    rules: Sequence[AlertRule] | None = None,
) -> Rolled:
    """Write the closed windows of the last ``days`` as monitoring windows of ``llm:<route>``
    and ``rag:<index>`` — window metrics ``context_relevance``, ``groundedness``,
    ``answer_relevance`` (mean scores) and ``evaluated`` (requests judged) — then evaluate
    the alert rules (``rules``, default ``[[monitor.alerts]]``) over those deployments.

    Idempotent: a window whose metrics are unchanged is not written again, a changed one
    replaces its metrics, and an alert fires once per firing window.

    >>> roll_windows(ws, window="1h").alerts                             # doctest: +SKIP
    [AlertChange(kind='fired', alert=Alert(rule='ungrounded', deployment='rag:docs', …), …)]
    """
    from loopml.monitoring import alerts
    from loopml.monitoring.tables import monitor_metrics, monitor_windows
    from loopml.monitoring.windows import WINDOW, WindowResult, align, parse_window, store_windows

    ws = resolve_workspace(workspace)
    size = parse_window(window)
    at = _moment(now)
    until = align(at, size)  # the windows that ended by now
    since = align(at - timedelta(days=days), size)
    size_ms = int(size.total_seconds() * 1000)
    buckets: dict[tuple[str, int], dict[str, _Bucket]] = {}
    for row in _rows(ws, _ms(since), _ms(until)):
        if row.status != OK or row.score is None:
            continue
        start = int(row.request_at) - int(row.request_at) % size_ms
        names = [f"llm:{row.route}"] + ([f"rag:{row.rag_index}"] if row.rag_index else [])
        for name in names:
            bucket = buckets.setdefault((name, start), {}).setdefault(row.evaluator, _Bucket())
            bucket.scores.append(float(row.score))
            bucket.requests.add(row.request_id)
    computed: dict[tuple[str, int], dict[tuple[str, str], float]] = {}
    for key, by_evaluator in buckets.items():
        metrics = {
            (WINDOW, evaluator): sum(b.scores) / len(b.scores)
            for evaluator, b in by_evaluator.items()
        }
        requests = set().union(*(b.requests for b in by_evaluator.values()))
        metrics[(WINDOW, EVALUATED)] = float(len(requests))
        computed[key] = metrics
    names = sorted({name for name, _ in computed})
    stored: dict[tuple[str, int], dict[tuple[str, str], float | None]] = {}
    if names:
        stmt = (
            select(
                monitor_windows.c.deployment,
                monitor_windows.c.start_at,
                monitor_metrics.c.feature,
                monitor_metrics.c.metric,
                monitor_metrics.c.value,
            )
            .join(monitor_metrics, monitor_metrics.c.window_id == monitor_windows.c.id)
            .where(
                monitor_windows.c.deployment.in_(names),
                monitor_windows.c.start_at >= _ms(since),
                monitor_windows.c.end_at - monitor_windows.c.start_at == size_ms,
            )
        )
        with ws.db.read() as conn:
            for row in conn.execute(stmt):
                key = (row.deployment, int(row.start_at))
                stored.setdefault(key, {})[(row.feature, row.metric)] = row.value
    results = [
        WindowResult(
            deployment=name,
            start=_datetime(start),
            end=_datetime(start + size_ms),
            status="ok",
            rows=int(metrics[(WINDOW, EVALUATED)]),
            metrics=metrics,
        )
        for (name, start), metrics in sorted(computed.items())
        if not _same(metrics, stored.get((name, start)))
    ]
    if results:
        store_windows(ws.db, results)
    changes: list[AlertChange] = []
    for name in names:
        changes.extend(alerts.evaluate(name, now=at, rules=rules, workspace=ws))
    return Rolled(results, changes)


def _same(
    computed: Mapping[tuple[str, str], float], stored: Mapping[tuple[str, str], float | None] | None
) -> bool:
    if stored is None or set(computed) != set(stored):
        return False
    for key, value in computed.items():
        old = stored[key]
        if old is None or not math.isclose(value, old, rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
