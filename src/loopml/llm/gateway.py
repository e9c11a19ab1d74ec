"""The gateway: one object in front of every LLM provider, used in-process or by the server.

    gw = Gateway.from_config(workspace=ws)                 # [gateway] of loopml.toml
    reply = gw.chat({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]})
    reply.body["choices"][0]["message"]["content"], reply.cost_usd, reply.request_id
    for chunk in gw.stream({...}): ...                      # OpenAI chat.completion.chunk dicts
    await gw.achat({...}); async for chunk in await gw.astream({...}): ...

Each request goes through the same steps, in-process or over HTTP:

1. the virtual key is authenticated (cached; :class:`~loopml.llm.keys.KeyCache`) and may be
   limited to some models; with ``[gateway.guardrails]``, the request's policy judges its
   messages (block or redact), and with ``[gateway.cache]`` a cached answer is served
   (:mod:`loopml.llm.stages`);
2. the router resolves the model name to a group (a rule-based router may choose it, and a
   prompt over the group's context window moves to a larger one) and plans the deployments
   to try;
3. rate limits and budgets of the key, its team and the end user are checked before
   dispatch, with the cost estimated from the prompt and ``max_tokens`` at the model's price
   (counted in the metadata store or Redis, so every replica sees the same counts);
4. deployments are tried in plan order: 429s, 5xx, timeouts and dropped connections are
   retried on the next deployment (``Retry-After`` honoured; repeated failures cool a
   deployment down); a stream that breaks before its first token fails over silently, one
   that breaks later ends with :class:`StreamInterrupted`;
5. the output guardrails judge the answer (a stream as it arrives) and the cache keeps it;
   the cost is computed from the provider's usage, spend and tokens are added to the
   counters, budget thresholds crossed become ``llm.budget_threshold`` events, and the
   request and its spans go to the request log, all off the response path.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loopml.exceptions import LoopmlError
from loopml.llm import tokens
from loopml.llm.config import Deployment, GatewayConfig, Limits, load_gateway_config
from loopml.llm.errors import (
    BadRequest,
    BudgetExceeded,
    ContextWindowExceeded,
    GatewayError,
    PermissionDenied,
    ProviderError,
    UpstreamError,
)
from loopml.llm.logs import RequestLog, RequestRecord
from loopml.llm.metrics import GatewayMetrics
from loopml.llm.prices import cost_usd, estimate_cost_usd, price_for
from loopml.llm.router import Route, Router
from loopml.llm.stages import Judged, answer_text, guard_chunk, with_answer_text
from loopml.llm.translate import openai_usage
from loopml.llm.types import Attempt, Body, Completion, Provider, Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from loopml.llm.cache import CacheHit, Mode
    from loopml.llm.cache.engine import Cache
    from loopml.llm.keys import KeyCache, VirtualKey
    from loopml.llm.limits import Crossing, Limiter
    from loopml.llm.rag.online import OnlineEvaluator
    from loopml.llm.tracing import Tracing
    from loopml.workspace import Workspace, WorkspaceLike

log = logging.getLogger("loopml.llm")
T = TypeVar("T")

#: ``max_tokens`` assumed for the pre-dispatch budget estimate when a request sets none.
DEFAULT_MAX_TOKENS_ESTIMATE = 1024
#: Seconds a prompt reference's resolution is reused (a label moved is seen within this).
PROMPT_TTL = 5.0
#: Longest a retry waits for a ``Retry-After`` on the same deployment (seconds).
MAX_RETRY_WAIT = 5.0
#: Set in the gateway's own background calls (the online evaluation's judges): they need
#: no virtual key even where every client request does.
INTERNAL_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "loopml_gateway_internal_call", default=False
)


class StreamInterrupted(GatewayError):
    """The provider's stream broke after tokens were sent to the client: the client gets an
    error event instead of a stream that looks complete, and the log marks it truncated."""

    status, type, code = 502, "api_error", "stream_interrupted"


@dataclass
class GatewayResponse:
    """A non-streamed answer: the OpenAI-shaped ``body`` and what the gateway knows of it."""

    body: Body
    request_id: str
    usage: Usage
    cost_usd: float
    deployment: str
    model: str
    attempts: list[Attempt] = field(default_factory=list)
    #: How the cache answered (exact, semantic or coalesced), None when the providers did.
    cache: str | None = None

    def headers(self) -> dict[str, str]:
        """The ``x-loopml-*`` headers the server adds to the HTTP answer."""
        headers = {
            "x-request-id": self.request_id,
            "x-loopml-cost-usd": f"{self.cost_usd:.8f}",
            "x-loopml-deployment": self.deployment,
            "x-loopml-attempts": str(len(self.attempts)),
        }
        if self.cache is not None:
            headers["x-loopml-cache"] = self.cache
        return headers


class GatewayStream:
    """A streamed answer's chunks (an async iterator) and the request id the gateway gave
    it, which the HTTP server sends as ``x-request-id`` before the first chunk."""

    def __init__(self, chunks: AsyncIterator[Body], request_id: str) -> None:
        self._chunks = chunks
        self.request_id = request_id

    def __aiter__(self) -> GatewayStream:
        return self

    async def __anext__(self) -> Body:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()


@dataclass
class _Call:
    """What the gateway knows of one request while it runs."""

    request_id: str
    endpoint: str
    body: Body
    started: float  # perf_counter
    created_at: int  # ms
    key: VirtualKey | None
    user: str | None
    tags: list[str]
    route: Route | None = None
    prompt_tokens: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    span: Span | None = None
    guard: Judged | None = None
    cache_mode: Mode | None = None  # None: no cache for this request
    tenant: str = ""
    cache_entry: dict[str, Any] | None = None  # the log's `cache` column when it answered
    saved_usd: float | None = None
    prompt: str | None = None  # NAME/VERSION of the registered prompt it was made from
    prompt_label: str | None = None  # the label it was resolved through ("" if none)
    recorded: bool = False  # logged already (an answer blocked after it was billed)


class Gateway:
    """Routing, limits, accounting, logging and tracing for LLM requests (see the module)."""

    def __init__(
        self,
        config: GatewayConfig,
        workspace: Workspace,
        *,
        require_key: bool | None = None,
        config_path: str | os.PathLike[str] | None = None,
    ) -> None:
        from loopml.llm.counters import open_counters
        from loopml.llm.keys import KeyCache
        from loopml.llm.limits import Limiter
        from loopml.llm.providers import PROVIDERS
        from loopml.llm.tracing import Tracing

        self.workspace = workspace
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.require_key = config.require_key if require_key is None else require_key
        self.router = Router(config)
        self.providers: dict[str, Provider] = {kind: make() for kind, make in PROVIDERS.items()}
        self.keys: KeyCache = KeyCache(workspace)
        self.limiter: Limiter = Limiter(
            open_counters(workspace, config.limits_url),
            thresholds=config.budget_alerts,
            on_crossing=self._emit_crossing,
        )
        self.log = RequestLog(
            workspace,
            flush_interval=config.log_flush_interval,
            batch_rows=config.log_batch_rows,
        )
        self.tracing: Tracing = Tracing(self.log, otlp_endpoint=config.otlp_endpoint)
        self.metrics = GatewayMetrics()
        self.config = self._versioned(config)
        self.cache: Cache | None = self._open_cache(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._unpriced: set[str] = set()
        # reference -> (read at, its PromptChoices: a label's versions and split)
        self._prompts: dict[str, tuple[float, Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.online: OnlineEvaluator | None = self._open_online(self.config)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        workspace: WorkspaceLike = None,
        require_key: bool | None = False,
    ) -> Gateway:
        """A gateway over ``workspace`` (default: the discovered one) with ``config``: a
        :class:`GatewayConfig`, a ``[gateway]`` table as a dict, a TOML file's path, or None
        for ``[gateway]`` of the workspace's ``loopml.toml``. In-process, a key is optional
        (``require_key=False``): given one, its limits and budget apply."""
        from loopml.workspace import resolve_workspace

        ws = resolve_workspace(workspace)
        path: str | os.PathLike[str] | None = None
        if isinstance(config, GatewayConfig):
            checked = config
        elif isinstance(config, Mapping):
            checked = GatewayConfig.from_dict(config, source="the config given")
        elif config is not None:
            path = config
            checked = load_gateway_config(config)
        else:
            checked = load_gateway_config(settings=ws.settings)
        return cls(checked, ws, require_key=require_key, config_path=path)

    def reload(self, config: GatewayConfig) -> None:
        """Serve ``config`` from now on (requests in flight finish on the old one). The
        router's health state is kept for deployments that are still there."""
        router = Router(config)
        router.adopt(self.router)
        config = self._versioned(config)
        cache = self.cache
        if config.raw.get("cache") != self.config.raw.get("cache"):
            cache = self._open_cache(config)
            if self.cache is not None:
                self.cache.close()
        self.config, self.router, self.cache = config, router, cache
        if self.online is not None:
            self.online.configure(config.online_eval)
        else:
            self.online = self._open_online(config)

    def _open_online(self, config: GatewayConfig) -> OnlineEvaluator | None:
        """The online evaluation of sampled requests, when ``[gateway.online_eval]`` samples
        any (its thread starts with the first sampled request)."""
        if not config.online_eval.active:
            return None
        from loopml.llm.rag.online import OnlineEvaluator

        return OnlineEvaluator(self, config.online_eval)

    def _versioned(self, config: GatewayConfig) -> GatewayConfig:
        """``config`` with each guardrail policy in use saved as a version in the metadata
        store (a no-op for a policy saved before) and carrying that version."""
        guardrails = config.guardrails
        if not guardrails.active:
            return config
        import dataclasses

        from loopml.llm.guardrails import save_policy

        used = {guardrails.default, *guardrails.routes.values(), *guardrails.teams.values()}
        used |= set(guardrails.keys.values())
        policies = dict(guardrails.policies)
        for name in used:
            if name and name != "none" and policies[name].version is None:
                policy = policies[name]
                policies[name] = policy.with_version(save_policy(self.workspace, policy))
        return dataclasses.replace(
            config, guardrails=dataclasses.replace(guardrails, policies=policies)
        )

    def _open_cache(self, config: GatewayConfig) -> Cache | None:
        if config.cache is None:
            return None
        from loopml.llm.cache.engine import Cache

        cache = Cache(self.workspace, config.cache, embed=self._embed_for_cache)
        cache.start()  # load the entries other replicas kept, from now on
        return cache

    async def _embed_for_cache(self, alias: str, texts: list[str]) -> list[list[float]]:
        """The cache's ``gateway:<alias>`` embedder: this gateway's own embeddings route."""
        reply = await self.aembed({"model": alias, "input": texts})
        rows = sorted(reply.body["data"], key=lambda row: row.get("index", 0))
        return [row["embedding"] for row in rows]

    # -- the model list ----------------------------------------------------------------------

    def model_names(self, api_key: str | None = None) -> list[str]:
        """The model names a client may ask for (groups and routers), as the key allows."""
        key = self._authenticate(api_key)
        names = [*self.config.models, *self.config.routers]
        if key is not None and key.models:
            names = [n for n in names if n in key.models]
        return sorted(names)

    # -- chat ----------------------------------------------------------------------------------

    async def achat(
        self,
        body: Body,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        endpoint: str = "chat",
    ) -> GatewayResponse:
        """Answer an OpenAI-shaped chat request (``stream`` must be absent or false)."""
        call = self._begin(body, api_key, headers, endpoint)
        return await self._answer(call, self._check_chat_body, self._chat_once)

    async def aembed(
        self, body: Body, *, api_key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> GatewayResponse:
        """Answer an OpenAI ``/embeddings`` request."""
        call = self._begin(body, api_key, headers, "embeddings")
        return await self._answer(call, self._check_embeddings_body, self._embed_once)

    async def _answer(
        self,
        call: _Call,
        check: Callable[[Body], None],
        once: Callable[[_Call, Deployment], Awaitable[Completion]],
    ) -> GatewayResponse:
        """Check, admit and dispatch a non-streamed request; log it however it ends."""
        try:
            if "prompt" in call.body and call.endpoint != "embeddings":
                await self._apply_prompt(call)
            check(call.body)
            if call.endpoint != "embeddings":
                hit = await self._protect(call)
                if hit is not None:
                    return self._serve_hit(call, hit)
            plan = await self._admit(call)
            flights = self._flights(call)
            if flights is None:
                completion, deployment = await self._dispatch(call, plan, once)
            else:
                key, run = flights
                (completion, deployment, leader), shared = await run(key, call, plan, once)
                if shared:
                    return self._serve_shared(call, completion, deployment, leader)
            if call.guard is not None:
                completion = await self._judge_answer(call, completion, deployment, plan)
        except BaseException as exc:
            self._fail(call, exc)
            raise
        response = self._succeed(call, completion, deployment)
        self._keep(call, completion.body, response.cost_usd)
        return response

    async def astream(
        self,
        body: Body,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        endpoint: str = "chat",
    ) -> AsyncIterator[Body]:
        """Stream an OpenAI-shaped chat request: returns once the first token is in hand (so
        every failure up to then is an ordinary error, after failing over silently), then
        yields ``chat.completion.chunk`` objects. A break after tokens were sent raises
        :class:`StreamInterrupted` from the iterator."""
        call = self._begin(body, api_key, headers, endpoint)
        try:
            if "prompt" in call.body:
                await self._apply_prompt(call)
            self._check_chat_body(call.body)
            hit = await self._protect(call)
            if hit is not None:
                return GatewayStream(self._replay(call, hit), call.request_id)
            plan = await self._admit(call)
            budget = await self._stream_budget(call)
            opened, deployment = await self._dispatch(call, plan, self._open_stream)
        except BaseException as exc:
            self._fail(call, exc)
            raise
        return GatewayStream(self._relay(call, opened, deployment, budget), call.request_id)

    async def _stream_budget(self, call: _Call) -> tuple[str, float] | None:
        """(subject, USD left) of the tightest budget when streams are cut at it, else None."""
        if not self.config.cut_streams_at_budget:
            return None
        subjects = [(s, lim) for s, lim in self._subjects(call) if lim.budget is not None]
        if not subjects:
            return None
        return await asyncio.to_thread(self.limiter.budget_left, subjects)

    # -- sync wrappers (a loop of the gateway's own, so the connection pool persists) ----

    def chat(self, body: Body, **kwargs: Any) -> GatewayResponse:
        """:meth:`achat` from synchronous code."""
        return self._run(self.achat(body, **kwargs))

    def embed(self, body: Body, **kwargs: Any) -> GatewayResponse:
        """:meth:`aembed` from synchronous code."""
        return self._run(self.aembed(body, **kwargs))

    def stream(self, body: Body, **kwargs: Any) -> Iterator[Body]:
        """:meth:`astream` from synchronous code: yields the chunks as they arrive."""
        chunks = self._run(self.astream(body, **kwargs))
        iterator = chunks.__aiter__()
        try:
            while True:
                try:
                    yield self._run(iterator.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                self._run(closer())

    def _run(self, coro: Awaitable[T]) -> T:
        import asyncio

        with self._lock:
            if self._closed:
                raise GatewayError("This gateway is closed.")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="loopml-llm-gateway", daemon=True
                )
                thread.start()
                self._loop, self._loop_thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the providers' connections, write what the log still holds, stop tracing."""
        if self.online is not None:
            await asyncio.to_thread(self.online.close)
        for provider in self.providers.values():
            await provider.aclose()
        self._close_sync()

    def close(self) -> None:
        """:meth:`aclose` from synchronous code; idempotent."""
        if self.online is not None:
            self.online.close()  # its judges go through this gateway: first
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._close_providers(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)
        self._close_sync()

    async def _close_providers(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    def _close_sync(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.limiter.close()
        if self.cache is not None:
            self.cache.close()
        self.tracing.shutdown()
        self.log.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the steps -------------------------------------------------------------------------

    def _authenticate(self, api_key: str | None) -> VirtualKey | None:
        if api_key is None and (not self.require_key or INTERNAL_CALL.get()):
            return None
        return self.keys.authenticate(api_key)

    def _begin(
        self, body: Any, api_key: str | None, headers: Mapping[str, str] | None, endpoint: str
    ) -> _Call:
        started = time.perf_counter()
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object.")
        key = self._authenticate(api_key)
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise BadRequest("'user' must be a string.")
        mode = None
        if "cache" in body:  # loopml's own field ("cache": false), not for the provider
            if self.cache is not None:
                from loopml.llm.cache import request_mode

                mode = request_mode(headers, body)
            body = {k: v for k, v in body.items() if k != "cache"}
        elif self.cache is not None and endpoint != "embeddings":
            from loopml.llm.cache import request_mode

            mode = request_mode(headers, None)
        call = _Call(
            request_id=f"req_{random.getrandbits(96):024x}",
            endpoint=endpoint,
            body=body,
            started=started,
            created_at=int(time.time() * 1000),
            key=key,
            user=user,
            tags=_tags(body, headers),
            cache_mode=mode,
        )
        context = self.tracing.context_from_headers(headers) if headers else None
        call.span = self.tracing.tracer.start_span(
            f"gateway {endpoint}",
            context=context,
            kind=_span_kind("SERVER"),
            attributes={
                "gen_ai.operation.name": "embeddings" if endpoint == "embeddings" else "chat",
                "gen_ai.request.model": str(body.get("model")),
                "loopml.request_id": call.request_id,
            },
        )
        return call

    @staticmethod
    def _check_embeddings_body(body: Body) -> None:
        if not isinstance(body.get("input"), str | list) or not body.get("input"):
            raise BadRequest("'input' must be a non-empty string or list of strings.")

    @staticmethod
    def _check_chat_body(body: Body) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list of messages.")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest(f"messages[{i}] must be an object with a 'role'.")

    def _check_model(self, call: _Call) -> str:
        """The model the request asks for, which must exist and be one the key may use."""
        model = call.body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest("'model' must name a model: GET /v1/models lists them.")
        if call.key is not None and call.key.models and model not in call.key.models:
            raise PermissionDenied(
                f"Key {call.key.id} may not use model {model!r}; it may use "
                + ", ".join(call.key.models)
                + "."
            )
        return model

    async def _admit(self, call: _Call) -> list[Deployment]:
        body = call.body
        model = self._check_model(call)
        call.prompt_tokens = (
            tokens.count_request(body)
            if call.endpoint != "embeddings"
            else tokens.count_text(_input_text(body.get("input")))
        )
        with self._child_span(call, "router") as span:
            call.route = self.router.resolve(
                model, body, tags=call.tags, prompt_tokens=call.prompt_tokens
            )
            plan = self.router.plan(call.route)
            span.set_attribute("loopml.route.group", call.route.group.name)
            span.set_attribute("loopml.route.reason", call.route.reason)
        subjects = self._subjects(call)
        if subjects:
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
            out = int(max_tokens) if isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS_ESTIMATE
            if call.endpoint == "embeddings":
                out = 0
            price = price_for(plan[0], self.config.prices) if plan else None
            estimate = estimate_cost_usd(call.prompt_tokens, out, price)
            # Usually answered from this process's leases and cached reads; the store is
            # read (off the event loop) only when a lease is used up or a read is stale.
            if not self.limiter.try_check_request(
                subjects, estimated_tokens=call.prompt_tokens + out, estimated_cost=estimate
            ):
                await asyncio.to_thread(
                    self.limiter.check_request,
                    subjects,
                    estimated_tokens=call.prompt_tokens + out,
                    estimated_cost=estimate,
                )
        return plan

    def _subjects(self, call: _Call) -> list[tuple[str, Limits]]:
        subjects: list[tuple[str, Limits]] = []
        key = call.key
        if key is not None:
            if _limited(key.limits):
                subjects.append((f"key:{key.id}", key.limits))
            team = self.config.teams.get(key.team) if key.team else None
            if team is not None and _limited(team):
                subjects.append((f"team:{key.team}", team))
        if call.user is not None and _limited(self.config.user_limits):
            subjects.append((f"user:{call.user}", self.config.user_limits))
        return subjects

    # -- registered prompts (loopml.llm.prompts) ---------------------------------------------

    async def _apply_prompt(self, call: _Call) -> None:
        """``{"prompt": "support/answer@production", "variables": {...}}`` instead of (or
        ahead of) ``messages``: the version the reference names now, rendered; its model and
        params apply where the request sets none. A label's move is seen within
        :data:`PROMPT_TTL` seconds. A label in an A/B test gives each end user (the request's
        ``user``, else its request id) their version of the split, the same every time."""
        body = call.body
        ref, variables = body.get("prompt"), body.get("variables", {})
        if not isinstance(ref, str) or not ref.strip():
            raise BadRequest(
                "'prompt' must name a registered prompt: NAME, NAME@LABEL or NAME/VERSION."
            )
        if not isinstance(variables, dict):
            raise BadRequest("'variables' must be an object of the prompt's variables.")
        found = self._prompts.get(ref)
        if found is None or time.monotonic() - found[0] > PROMPT_TTL:
            from loopml.llm.prompts.versions import prompt_choices

            try:
                choices = await asyncio.to_thread(prompt_choices, ref, workspace=self.workspace)
            except LoopmlError as exc:
                raise BadRequest(f"prompt {ref!r}: {exc}") from exc
            if len(self._prompts) > 1000:
                self._prompts.clear()
            self._prompts[ref] = found = (time.monotonic(), choices)
        choices = found[1]
        version = choices.choose(call.user or call.request_id)
        try:
            rendered = version.render(**variables)
        except LoopmlError as exc:
            raise BadRequest(str(exc)) from exc
        messages = (
            [{"role": "user", "content": rendered}] if isinstance(rendered, str) else rendered
        )
        given = body.get("messages")
        if given is not None and not isinstance(given, list):
            raise BadRequest("'messages' must be a list (they follow the prompt's).")
        out = {k: v for k, v in body.items() if k not in ("prompt", "variables")}
        out["messages"] = [*messages, *(given or [])]
        if not out.get("model"):
            if not version.model:
                raise BadRequest(
                    f"prompt {version.ref} names no model: send 'model' with the request."
                )
            out["model"] = version.model
        for key, value in (version.params or {}).items():
            out.setdefault(key, value)
        call.body, call.prompt, call.prompt_label = out, version.ref, choices.ref.label or ""
        if call.span is not None:
            call.span.set_attribute("loopml.prompt.name", version.name)
            call.span.set_attribute("loopml.prompt.version", version.version)
            if choices.ref.label is not None:
                call.span.set_attribute("loopml.prompt.label", choices.ref.label)
            call.span.set_attribute("gen_ai.request.model", str(out["model"]))

    # -- guardrails and the cache (loopml.llm.stages) ------------------------------------------

    async def _protect(self, call: _Call) -> CacheHit | None:
        """Before the providers: the input guardrails (a block raises, a redaction replaces
        the messages), then the cache (a hit is returned)."""
        model = self._check_model(call)
        key = call.key
        key_id, team = (key.id, key.team) if key is not None else (None, None)
        guardrails = self.config.guardrails
        policy = (
            guardrails.policy_for(key_id=key_id, team=team, route=model)
            if guardrails.active
            else None
        )
        if policy is not None:
            judged = call.guard = Judged(policy)
            with self._child_span(call, "guardrails input") as span:
                verdict = policy.check_input(call.body["messages"])
                span.set_attributes(verdict.span_attributes())
            judged.input = verdict
            if verdict.blocked:
                raise verdict.error()
            if verdict.redacted and verdict.messages is not None:
                call.body = {**call.body, "messages": list(verdict.messages)}
        cache = self.cache
        if cache is None or call.cache_mode is None:
            return None
        self.router.check_known(model)  # a removed model is not answered from the cache
        call.tenant = cache.tenant(key_id=key_id, team=team)
        if call.guard is not None:  # what one policy passed is not served under another
            call.tenant += f"|guardrails:{call.guard.label}"
        with self._child_span(call, "cache lookup") as span:
            hit = await cache.lookup(
                call.body, tenant=call.tenant, route=model, mode=call.cache_mode
            )
            span.set_attribute("loopml.cache.hit", hit is not None)
            if hit is not None:
                span.set_attribute("loopml.cache.kind", hit.kind)
                span.set_attribute("loopml.cache.similarity", hit.similarity)
                span.set_attribute("loopml.cache.matched_request_id", hit.request_id or "")
        if hit is not None:
            call.cache_entry, call.saved_usd = hit.log_entry(), hit.saved_usd
        return hit

    def _serve_hit(self, call: _Call, hit: CacheHit) -> GatewayResponse:
        """A cached answer: no provider, no cost (what it saved is logged)."""
        model = str(hit.body.get("model") or call.body.get("model"))
        usage = openai_usage(hit.body.get("usage"))
        return self._free_answer(call, None, hit.body, usage, model, hit.kind)

    def _free_answer(
        self,
        call: _Call,
        deployment: Deployment | None,
        body: Body,
        usage: Usage,
        model: str,
        cache: str,
    ) -> GatewayResponse:
        """Log and return an answer no provider was paid for (a cache hit, a coalesced
        request): cost 0, the answer's own ``usage`` reported to the client."""
        self._record(
            call,
            deployment,
            Usage(),
            0.0,
            status=200,
            error=None,
            stream=False,
            truncated=False,
            ttft_ms=None,
            response=body,
        )
        return GatewayResponse(
            body=body,
            request_id=call.request_id,
            usage=usage,
            cost_usd=0.0,
            deployment=deployment.name if deployment is not None else "",
            model=model,
            cache=cache,
        )

    async def _replay(self, call: _Call, hit: CacheHit) -> AsyncIterator[Body]:
        """A cached answer as a stream (logged when it ends, however it ends)."""
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        status, error = 200, None
        try:
            for chunk in hit.chunks(include_usage=include_usage):
                yield chunk
        except (asyncio.CancelledError, GeneratorExit) as exc:
            status, error = 499, _describe(exc)
            raise
        finally:
            self._record(
                call,
                None,
                Usage(),
                0.0,
                status=status,
                error=error,
                stream=True,
                truncated=status != 200,
                ttft_ms=(time.perf_counter() - call.started) * 1000,
                response=hit.body,
            )

    def _flights(self, call: _Call) -> tuple[str, Callable[..., Awaitable[Any]]] | None:
        """With ``coalesce = true``: (the request's exact key, a runner that makes one
        upstream call for every concurrent identical request); else None."""
        cache = self.cache
        if (
            cache is None
            or not cache.config.coalesce
            or call.cache_mode is None
            or not call.cache_mode.read
            or call.endpoint == "embeddings"
        ):
            return None
        route = str(call.body.get("model"))
        if not cache.config.route(route).enabled:
            return None
        key = cache.key(call.body, tenant=call.tenant, route=route)

        async def run(
            key: str,
            call: _Call,
            plan: list[Deployment],
            once: Callable[[_Call, Deployment], Awaitable[Completion]],
        ) -> tuple[tuple[Completion, Deployment, str], bool]:
            async def lead() -> tuple[Completion, Deployment, str]:
                completion, deployment = await self._dispatch(call, plan, once)
                return completion, deployment, call.request_id

            return await cache.flights.run(key, lead)

        return key, run

    def _serve_shared(
        self, call: _Call, completion: Completion, deployment: Deployment, leader: str
    ) -> GatewayResponse:
        """The answer of an identical request in flight at the same time: its cost is the
        leader's; this one is logged as a coalesced cache hit that saved it."""
        saved = cost_usd(completion.usage, price_for(deployment, self.config.prices))
        call.cache_entry = {"kind": "coalesced", "matched_request_id": leader}
        call.saved_usd = saved
        body = completion.body
        if call.guard is not None:
            text = answer_text(body)
            if text is not None:
                verdict = call.guard.policy.check_output(text)
                call.guard.output = verdict
                if verdict.blocked:
                    raise verdict.error()
                if verdict.redacted and verdict.text is not None:
                    body = with_answer_text(body, verdict.text)
        return self._free_answer(
            call, deployment, body, completion.usage, deployment.model, "coalesced"
        )

    async def _judge_answer(
        self,
        call: _Call,
        completion: Completion,
        deployment: Deployment,
        plan: list[Deployment],
    ) -> Completion:
        """The output guardrails on a whole answer: a block is billed and logged, then
        raised; a redaction replaces the answer's text. A ``json_schema`` rule with
        ``reask = true`` may ask the model once more (the answer and what was wrong with it
        added to the conversation); both calls are billed, the second answer is judged."""
        judged = call.guard
        assert judged is not None
        text = answer_text(completion.body)
        if text is None:
            return completion
        first = completion

        async def reask(answer: str, problems: str) -> str:
            nonlocal completion
            import dataclasses

            messages = [
                *call.body["messages"],
                {"role": "assistant", "content": answer},
                {
                    "role": "user",
                    "content": f"That answer is not valid ({problems}). Answer again with only "
                    "the corrected JSON.",
                },
            ]
            again = dataclasses.replace(call, body={**call.body, "messages": messages})
            second, _ = await self._dispatch(again, plan, self._chat_once)
            completion = Completion(
                second.body, first.usage + second.usage, second.http_status, second.headers
            )
            return answer_text(second.body) or ""

        with self._child_span(call, "guardrails output") as span:
            verdict = await judged.policy.acheck_output(text, reask=reask)
            span.set_attributes(verdict.span_attributes())
        judged.output = verdict
        if verdict.blocked:
            error = verdict.error()
            self._account(
                call,
                deployment,
                completion.usage,
                status=error.status,
                error=_describe(error),
                stream=False,
                truncated=False,
                ttft_ms=None,
                response=None,
            )
            call.recorded = True
            raise error
        if verdict.redacted and verdict.text is not None:
            body = with_answer_text(completion.body, verdict.text)
            return Completion(body, completion.usage, completion.http_status, completion.headers)
        return completion

    def _keep(self, call: _Call, answer: Body, cost: float) -> None:
        """Give a fresh answer to the cache, off the response path."""
        cache, mode = self.cache, call.cache_mode
        if cache is None or mode is None or not mode.write or call.cache_entry is not None:
            return
        store = cache.store(
            call.body,
            answer,
            tenant=call.tenant,
            route=str(call.body.get("model")),
            request_id=call.request_id,
            cost_usd=cost,
            mode=mode,
        )
        task = asyncio.get_running_loop().create_task(store)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _dispatch(
        self,
        call: _Call,
        plan: list[Deployment],
        once: Callable[[_Call, Deployment], Awaitable[T]],
    ) -> tuple[T, Deployment]:
        """Try the plan's deployments in order until one answers; the attempt chain is kept
        on ``call``. Raises the last error, as the client should see it."""
        assert call.route is not None
        budget = 1 + max(0, self.config.num_retries)
        queue = list(plan)
        failures: list[ProviderError] = []
        index = 0
        while len(call.attempts) < budget and queue:
            deployment = queue[index % len(queue)]
            index += 1
            if failures and failures[-1].retry_after and index > len(queue):
                # Back on a deployment that asked us to wait: wait (a little) first.
                await asyncio.sleep(min(failures[-1].retry_after, MAX_RETRY_WAIT))
            started = time.perf_counter()
            self.router.started(deployment)
            with self._child_span(call, f"attempt {deployment.name}", client=True) as span:
                span.set_attribute("gen_ai.system", deployment.provider)
                span.set_attribute("gen_ai.request.model", deployment.model)
                span.set_attribute("loopml.deployment", deployment.name)
                span.set_attribute("loopml.attempt", len(call.attempts) + 1)
                try:
                    result = await once(call, deployment)
                except ProviderError as exc:
                    elapsed = time.perf_counter() - started
                    self.router.finished(
                        deployment, elapsed, ok=False, kind=exc.kind, retry_after=exc.retry_after
                    )
                    call.attempts.append(_attempt(deployment, exc.kind, elapsed, exc))
                    span.set_attribute("error.type", exc.kind)
                    _set_error(span, exc.message)
                    self.metrics.provider_error(deployment, exc.kind)
                    failures.append(exc)
                    if exc.kind == "context_window":
                        larger = self._larger_context(call)
                        if larger is None:
                            raise ContextWindowExceeded(
                                f"The prompt (about {call.prompt_tokens} tokens) is over "
                                f"{deployment.name}'s context window and group "
                                f"{call.route.group.name!r} declares no larger_context."
                            ) from exc
                        queue, index = larger, 0
                        continue
                    if not exc.retryable:
                        raise _client_error(exc, deployment) from exc
                    continue
                except asyncio.CancelledError:
                    elapsed = time.perf_counter() - started
                    self.router.finished(deployment, elapsed, ok=True)
                    call.attempts.append(
                        _attempt(deployment, "cancelled", elapsed, None, status="cancelled")
                    )
                    raise
                elapsed = time.perf_counter() - started
                self.router.finished(deployment, elapsed, ok=True)
                call.attempts.append(_attempt(deployment, "ok", elapsed, None))
                return result, deployment
        raise _upstream_error(call, failures)

    def _larger_context(self, call: _Call) -> list[Deployment] | None:
        assert call.route is not None
        route = self.router.larger_context(call.route)
        if route is None:
            return None
        call.route = route
        return self.router.plan(route)

    async def _chat_once(self, call: _Call, deployment: Deployment) -> Completion:
        provider = self.providers[deployment.provider]
        return await provider.chat(deployment, call.body, timeout=self._timeout(deployment))

    async def _embed_once(self, call: _Call, deployment: Deployment) -> Completion:
        provider = self.providers[deployment.provider]
        return await provider.embed(deployment, call.body, timeout=self._timeout(deployment))

    async def _open_stream(self, call: _Call, deployment: Deployment) -> _Opened:
        """Start a stream and read up to its first token: a failure up to then is a
        ProviderError like any other (the dispatcher fails over silently)."""
        provider = self.providers[deployment.provider]
        chunks = provider.stream(deployment, call.body, timeout=self._timeout(deployment))
        iterator = chunks.__aiter__()
        buffered: list[Body] = []
        try:
            while True:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    return _Opened(iterator, buffered, ended=True, first_token_at=None)
                buffered.append(chunk)
                if _has_token(chunk):
                    return _Opened(
                        iterator, buffered, ended=False, first_token_at=time.perf_counter()
                    )
        except BaseException:
            await _aclose(iterator)
            raise

    def _timeout(self, deployment: Deployment) -> float:
        return deployment.timeout if deployment.timeout is not None else self.config.timeout

    async def _relay(
        self,
        call: _Call,
        opened: _Opened,
        deployment: Deployment,
        budget: tuple[str, float] | None = None,
    ) -> AsyncIterator[Body]:
        """Yield the stream to the client; account for it however it ends. With ``budget``
        (subject, USD left), the stream ends with an error once its cost reaches it."""
        price = price_for(deployment, self.config.prices) if budget is not None else None
        include_usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        usage: Usage | None = None
        text: list[str] = []
        guard = None
        if call.guard is not None:
            from loopml.llm.guardrails import StreamGuard

            guard = call.guard.stream = StreamGuard(call.guard.policy)
        # What the client was sent, put together: for the cache, and (guarded) for the log.
        keep = self.cache is not None and call.cache_mode is not None and call.cache_mode.write
        assembler = None
        if keep or guard is not None:
            from loopml.llm.cache import Assembler

            assembler = Assembler()
        model = deployment.model
        finish: str | None = None
        error: BaseException | None = None
        status, truncated = 200, False
        try:
            chunks: AsyncIterator[Body] = _chain(opened.buffered, opened.iterator, opened.ended)
            async for chunk in chunks:
                if chunk.get("usage"):
                    usage = openai_usage(chunk["usage"])
                    if not chunk.get("choices"):
                        if assembler is not None:
                            assembler.feed(chunk)
                        if include_usage:
                            yield chunk
                        continue
                    if not include_usage:
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                model = chunk.get("model") or model
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if isinstance(delta.get("content"), str):
                        text.append(delta["content"])
                    for tool_call in delta.get("tool_calls") or ():
                        arguments = (tool_call.get("function") or {}).get("arguments")
                        if isinstance(arguments, str):
                            text.append(arguments)
                    finish = choice.get("finish_reason") or finish
                if budget is not None and len(text) % 8 == 0:
                    so_far = Usage(
                        input_tokens=call.prompt_tokens,
                        output_tokens=tokens.count_text("".join(text)),
                    )
                    if cost_usd(so_far, price) >= budget[1]:
                        status, truncated = 402, True
                        error = BudgetExceeded(
                            f"{budget[0]}'s budget ran out during this stream (${budget[1]:.6f} "
                            "was left when it started); the answer is incomplete."
                        )
                        raise error
                if guard is not None:
                    try:
                        chunk = guard_chunk(chunk, guard)
                    except GatewayError as blocked:
                        status, truncated, error = blocked.status, True, blocked
                        raise
                if assembler is not None:
                    assembler.feed(chunk)
                yield chunk
        except ProviderError as exc:
            status, truncated, error = 502, True, exc
            raise StreamInterrupted(
                f"The provider's stream broke after tokens were sent ({exc.message}); the "
                "answer is incomplete."
            ) from exc
        except (asyncio.CancelledError, GeneratorExit) as exc:
            status, truncated, error = 499, True, exc  # the client went away
            raise
        finally:
            # Account first: under a cancelled client the awaits below may not run at all.
            if usage is None:
                usage = Usage(
                    input_tokens=call.prompt_tokens,
                    output_tokens=tokens.count_text("".join(text)),
                    estimated=True,
                )
            ttft = (opened.first_token_at - call.started) * 1000 if opened.first_token_at else None
            content = "".join(text)
            if guard is not None and assembler is not None:  # the log keeps what was sent
                content = answer_text(assembler.completion()) or ""
                with self._child_span(call, "guardrails output") as span:  # rules' latency
                    span.set_attributes(guard.verdict().span_attributes())
            cost = self._account(
                call,
                deployment,
                usage,
                status=status,
                error=_describe(error) if error else None,
                stream=True,
                truncated=truncated,
                ttft_ms=ttft,
                response={"content": content, "finish_reason": finish, "model": model},
            )
            if keep and status == 200 and assembler is not None and assembler.finished:
                with contextlib.suppress(RuntimeError):  # no loop left: nothing to keep
                    self._keep(call, assembler.completion(), cost)
            if status == 499:
                # Closing the provider's stream cancels the upstream request; do it in a task
                # of its own, outside the cancelled one.
                task = asyncio.get_running_loop().create_task(_aclose(opened.iterator))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            else:
                await _aclose(opened.iterator)

    # -- accounting --------------------------------------------------------------------------

    def _succeed(
        self, call: _Call, completion: Completion, deployment: Deployment
    ) -> GatewayResponse:
        cost = self._account(
            call,
            deployment,
            completion.usage,
            status=200,
            error=None,
            stream=False,
            truncated=False,
            ttft_ms=None,
            response=completion.body,
        )
        return GatewayResponse(
            body=completion.body,
            request_id=call.request_id,
            usage=completion.usage,
            cost_usd=cost,
            deployment=deployment.name,
            model=deployment.model,
            attempts=call.attempts,
        )

    def _fail(self, call: _Call, exc: BaseException) -> None:
        if call.recorded:
            return
        status = exc.status if isinstance(exc, GatewayError) else 500
        if isinstance(exc, asyncio.CancelledError):
            status = 499
        self._record(
            call,
            None,
            Usage(),
            0.0,
            status=status,
            error=_describe(exc),
            stream=bool(call.body.get("stream")) if isinstance(call.body, dict) else False,
            truncated=False,
            ttft_ms=None,
            response=None,
        )

    def _account(
        self,
        call: _Call,
        deployment: Deployment,
        usage: Usage,
        *,
        status: int,
        error: str | None,
        stream: bool,
        truncated: bool,
        ttft_ms: float | None,
        response: Any,
    ) -> float:
        price = price_for(deployment, self.config.prices)
        if price is None and deployment.name not in self._unpriced:
            self._unpriced.add(deployment.name)
            log.warning(
                "No price for %s (model %s): its requests cost 0. Add [gateway.prices.%s].",
                deployment.name,
                deployment.model,
                deployment.model,
            )
        cost = cost_usd(usage, price)
        subjects = self._subjects(call)
        if subjects:
            self._book(subjects, usage.total_tokens, cost)
        self._record(
            call,
            deployment,
            usage,
            cost,
            status=status,
            error=error,
            stream=stream,
            truncated=truncated,
            ttft_ms=ttft_ms,
            response=response,
        )
        return cost

    def _book(self, subjects: list[tuple[str, Limits]], tokens_used: int, cost: float) -> None:
        """Book a finished request's tokens and spend with the limiter: counted in this
        process's checks at once, written to the shared counters in batches by the limiter's
        writer thread, whose budget threshold crossings become events (:meth:`_emit_crossing`).
        In memory only: safe on the event loop."""
        try:
            crossings = self.limiter.record(subjects, tokens=tokens_used, cost_usd=cost, defer=True)
            for crossing in crossings:  # none with defer=True, unless kept from a failed write
                self._emit_crossing(crossing)
        except Exception:  # the books must never take the gateway down
            log.exception("Could not record spend for %s", [s for s, _ in subjects])

    async def aflush_cache(self) -> None:
        """Wait until the answers given to the cache so far are kept (they are kept off the
        response path, so an identical request right after may miss without this)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def flush_cache(self) -> None:
        """:meth:`aflush_cache` from synchronous code."""
        if self._loop is not None:
            self._run(self.aflush_cache())

    def feedback(
        self,
        request_id: str,
        value: float | bool,
        *,
        name: str = "user",
        comment: str | None = None,
        actor: str | None = None,
    ) -> Any:
        """Store feedback on one of this gateway's requests (:func:`loopml.llm.feedback.
        record_feedback`), writing the request log first: a request answered a moment ago
        is found even before the log's next batch."""
        from loopml.llm.feedback import record_feedback

        self.log.flush()
        return record_feedback(
            request_id, value, name=name, comment=comment, actor=actor, workspace=self.workspace
        )

    def flush_online_evals(self, timeout: float | None = None) -> bool:
        """Judge every request sampled so far for online evaluation now (not after
        ``delay_s``) and wait until its rows are written; whether all were, within
        ``timeout`` seconds. Store the application's retrieval spans first
        (:func:`loopml.llm.tracing.flush_traces`) for them to be found."""
        if self.online is None:
            return True
        done = self.online.flush(timeout)
        self.log.flush()  # the judges' own requests
        return done

    def flush_books(self) -> None:
        """Write every booked token and dollar to the shared counters now, and the events of
        the budget thresholds that crossed (the books are otherwise written in batches)."""
        for crossing in self.limiter.flush():
            self._emit_crossing(crossing)

    def _emit_crossing(self, crossing: Crossing) -> None:
        """One ``llm.budget_threshold`` event per configured fraction of the budget that the
        spend went past (``before < line <= after``)."""
        from loopml import events

        subject, budget, before, after = crossing
        for fraction in self.config.budget_alerts:
            line = budget.amount_usd * fraction
            if before < line <= after:
                events.emit(
                    self.workspace.db,
                    "llm.budget_threshold",
                    subject,
                    {
                        "budget_usd": budget.amount_usd,
                        "spent_usd": round(after, 8),
                        "fraction": fraction,
                        "period": budget.period,
                        "period_start": _period_start(budget.period),
                    },
                )

    def _record(
        self,
        call: _Call,
        deployment: Deployment | None,
        usage: Usage,
        cost: float,
        *,
        status: int,
        error: str | None,
        stream: bool,
        truncated: bool,
        ttft_ms: float | None,
        response: Any,
    ) -> None:
        latency_ms = (time.perf_counter() - call.started) * 1000
        key = call.key
        content = (key.log_content if key is not None else None) or self.config.log_content
        model = str(call.body.get("model")) if isinstance(call.body, dict) else "?"
        span = call.span
        trace_id = None
        if span is not None:
            context = span.get_span_context()
            trace_id = f"{context.trace_id:032x}"
            span.set_attribute("http.response.status_code", status)
            if deployment is not None:
                span.set_attribute("gen_ai.response.model", deployment.model)
                span.set_attribute("gen_ai.system", deployment.provider)
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            span.set_attribute("loopml.cost_usd", cost)
            if error:
                _set_error(span, error)
            span.end()
        self.log.add(
            RequestRecord(
                id=call.request_id,
                created_at=call.created_at,
                endpoint=call.endpoint,
                key_id=key.id if key is not None else None,
                team=key.team if key is not None else None,
                user=call.user,
                tags=call.tags,
                model_requested=model,
                model_used=deployment.model if deployment is not None else None,
                deployment=deployment.name if deployment is not None else None,
                provider=deployment.provider if deployment is not None else None,
                route_reason=call.route.reason if call.route is not None else None,
                attempts=call.attempts,
                status=status,
                error=error,
                stream=stream,
                truncated=truncated,
                latency_ms=latency_ms,
                ttft_ms=ttft_ms,
                usage=usage,
                cost_usd=cost,
                cache_hit=call.cache_entry is not None,
                trace_id=trace_id,
                request=call.body,
                response=response,
                log_content=content,  # redacted on the writer's thread, off the response path
                cache=call.cache_entry,
                saved_usd=call.saved_usd,
                guardrails=call.guard.log_entry() if call.guard is not None else None,
                prompt=call.prompt,
                prompt_label=call.prompt_label,
            )
        )
        call.recorded = True
        if call.cache_entry is not None:
            self.metrics.cache_hit(model)
        self.metrics.request(
            model=deployment.model if deployment is not None else model,
            key=key.id if key is not None else "",
            status=status,
            seconds=latency_ms / 1000,
            ttft_seconds=ttft_ms / 1000 if ttft_ms is not None else None,
            usage=usage,
            cost=cost,
        )
        if self.online is not None and status == 200:  # sampled or not: O(1), never raises
            self.online.offer(
                request_id=call.request_id,
                endpoint=call.endpoint,
                status=status,
                tags=call.tags,
                route=model,
                prompt=call.prompt,
                trace_id=trace_id,
                created_at=call.created_at,
                body=call.body,
                response=response,
                key_id=call.key.id if call.key is not None else None,
                team=call.key.team if call.key is not None else None,
            )

    # -- spans -----------------------------------------------------------------------------

    def _child_span(self, call: _Call, name: str, *, client: bool = False) -> Any:
        from opentelemetry import trace

        context = trace.set_span_in_context(call.span) if call.span is not None else None
        return self.tracing.tracer.start_as_current_span(
            name,
            context=context,
            kind=_span_kind("CLIENT" if client else "INTERNAL"),
            record_exception=False,
            set_status_on_exception=False,
        )


@dataclass
class _Opened:
    iterator: AsyncIterator[Body]
    buffered: list[Body]
    ended: bool
    first_token_at: float | None


async def _chain(
    buffered: Sequence[Body], iterator: AsyncIterator[Body], ended: bool
) -> AsyncIterator[Body]:
    for chunk in buffered:
        yield chunk
    if ended:
        return
    async for chunk in iterator:
        yield chunk


async def _aclose(iterator: AsyncIterator[Body]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        # Closing a broken stream may fail again: nothing is left to do then.
        with contextlib.suppress(Exception):
            await closer()


def _has_token(chunk: Body) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return False


def _limited(limits: Limits) -> bool:
    return bool(
        limits.rpm or limits.tpm or limits.budget or limits.max_request_cost_usd is not None
    )


def _tags(body: Body, headers: Mapping[str, str] | None) -> list[str]:
    tags: list[str] = []
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        given = metadata.get("tags")
        if isinstance(given, list):
            tags.extend(str(t) for t in given)
        elif isinstance(given, str):
            tags.extend(t.strip() for t in given.split(",") if t.strip())
    if headers:
        header = headers.get("x-loopml-tags")
        if header:
            tags.extend(t.strip() for t in header.split(",") if t.strip())
    return tags


def _input_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(v for v in value if isinstance(v, str))
    return ""


def _attempt(
    deployment: Deployment,
    kind: str,
    elapsed: float,
    exc: ProviderError | None,
    *,
    status: str | None = None,
) -> Attempt:
    return Attempt(
        deployment=deployment.name,
        provider=deployment.provider,
        model=deployment.model,
        status=status or kind,
        latency_ms=round(elapsed * 1000, 3),
        http_status=exc.status if exc is not None else 200,
        error=exc.message if exc is not None else None,
        started_at=time.time() - elapsed,
    )


def _client_error(exc: ProviderError, deployment: Deployment) -> GatewayError:
    if exc.kind == "auth":
        return UpstreamError(
            f"{deployment.name} refused the gateway's provider key ({exc.message}); check "
            f"{deployment.api_key_env or 'api_key_env'} on the gateway.",
            status=502,
        )
    return BadRequest(f"{deployment.name} refused the request: {exc.message}")


def _upstream_error(call: _Call, failures: list[ProviderError]) -> GatewayError:
    chain = "; ".join(
        f"{a.deployment}: {a.status}" + (f" ({a.error})" if a.error else "") for a in call.attempts
    )
    if not failures:
        return UpstreamError("No deployment could be tried (the plan was empty).", status=503)
    kinds = {f.kind for f in failures}
    if kinds == {"rate_limit"}:
        from loopml.llm.errors import RateLimited

        waits = [f.retry_after for f in failures if f.retry_after]
        return RateLimited(
            f"Every deployment is rate-limited by its provider: {chain}.",
            retry_after=min(waits) if waits else None,
        )
    status = 504 if kinds == {"timeout"} else 502
    return UpstreamError(
        f"All {len(call.attempts)} attempts failed: {chain}.", status=status, attempts=chain
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "client disconnected"
    text = str(exc) or type(exc).__name__
    return (
        text if isinstance(exc, GatewayError | ProviderError) else f"{type(exc).__name__}: {text}"
    )


def _set_error(span: Any, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, message))


def _span_kind(name: str) -> Any:
    from opentelemetry.trace import SpanKind

    return getattr(SpanKind, name)


def _period_start(period: str) -> str:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.isoformat()
