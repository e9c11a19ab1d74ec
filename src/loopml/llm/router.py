"""Which deployment a request goes to, and in what order the others are tried.

:meth:`Router.resolve` turns the model a client asked for (a model group, or a router that
picks a group per request from its rules) into a :class:`Route`, going on to a larger-context
group when the prompt doesn't fit. :meth:`Router.plan` orders the route's deployments by the
group's strategy, then its fallback groups' deployments, leaving out deployments in cooldown.
:meth:`Router.started` / :meth:`Router.finished` keep each deployment's health: requests in
flight, a moving average of latency, failures in a row and a cooldown (the circuit breaker).

The state is this process's own (what it has seen of each deployment); limits and budgets
that must hold across replicas are counted elsewhere (:mod:`loopml.llm.limits`). Meant for one
event loop: the methods don't block and hold no lock.
"""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loopml.llm.config import Deployment, GatewayConfig, ModelGroup, RouterRule
from loopml.llm.errors import ContextWindowExceeded, GatewayError, UnknownModel
from loopml.llm.types import Body

#: Weight of the newest latency in the moving average.
EWMA_ALPHA = 0.3
#: Failures that say nothing about the deployment's health (the request's own fault).
_NOT_COUNTED = frozenset({"context_window", "bad_request"})


@dataclass
class Route:
    """Where a request goes: the model group chosen for the name the client asked for, and
    why (``"model group"``, ``"rule 1: prompt 120 tokens <= 2000"``, ``"default"``, …)."""

    requested: str
    group: ModelGroup
    reason: str
    prompt_tokens: int = 0


class DeploymentState:
    """What this process has seen of one deployment."""

    __slots__ = (
        "cooldown_until",
        "deployment",
        "errors",
        "failures",
        "in_flight",
        "latency_s",
        "requests",
    )

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.in_flight = 0
        self.latency_s: float | None = None  # EWMA of successful attempts; None: untried
        self.failures = 0  # in a row
        self.cooldown_until = 0.0  # clock time; 0: not cooling down
        self.requests = 0
        self.errors = 0

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "group": self.deployment.group,
            "provider": self.deployment.provider,
            "model": self.deployment.model,
            "in_flight": self.in_flight,
            "latency_s": self.latency_s,
            "failures": self.failures,
            "cooldown_s": max(self.cooldown_until - now, 0.0),
            "requests": self.requests,
            "errors": self.errors,
        }


class _Classifier:
    """A rule's ``module:function``, imported on first use and kept (a failed import too)."""

    __slots__ = ("error", "function", "spec", "where")

    def __init__(self, spec: str, where: str) -> None:
        self.spec = spec
        self.where = where
        self.function: Callable[[Body], Any] | None = None
        self.error: GatewayError | None = None

    def __call__(self, body: Body) -> bool:
        if self.function is None:
            if self.error is not None:
                raise self.error
            self.function = self._load()
        try:
            return bool(self.function(body))
        except Exception as exc:
            raise GatewayError(
                f"{self.where}: classifier {self.spec!r} raised {type(exc).__name__}: {exc}"
            ) from exc

    def _load(self) -> Callable[[Body], Any]:
        module_name, _, attr = self.spec.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as exc:
            self.error = GatewayError(
                f"{self.where}: cannot load classifier {self.spec!r} "
                f"({type(exc).__name__}: {exc}); check the module is importable by the gateway "
                "and defines that function"
            )
            raise self.error from exc
        if not callable(target):
            self.error = GatewayError(
                f"{self.where}: classifier {self.spec!r} is not a function (got "
                f"{type(target).__name__}); point it at a function(body) -> bool"
            )
            raise self.error
        return target


class Router:
    """Routing over one :class:`~loopml.llm.config.GatewayConfig` (make a new one on reload,
    and :meth:`adopt` the old one's health of the deployments that remain).

    >>> router = Router(config)                                          # doctest: +SKIP
    >>> route = router.resolve("auto", body, prompt_tokens=120)           # doctest: +SKIP
    >>> route.group.name, route.reason                                    # doctest: +SKIP
    ('cheap', 'rule 1: prompt 120 tokens <= 2000')
    >>> [d.name for d in router.plan(route)]                              # doctest: +SKIP
    ['cheap-openai', 'cheap-groq', 'frontier-anthropic']
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._clock = clock
        self._cooldown_failures = config.cooldown_failures
        self._cooldown_seconds = config.cooldown_seconds
        self._groups = config.models
        self._routers = config.routers
        self._states: dict[str, DeploymentState] = {
            d.name: DeploymentState(d) for g in config.models.values() for d in g.deployments
        }
        self._members: dict[str, tuple[DeploymentState, ...]] = {}
        self._index()
        self._classifiers: dict[tuple[str, int], _Classifier] = {}
        for router in config.routers.values():
            for i, rule in enumerate(router.rules):
                if rule.classifier:
                    where = f"router {router.name!r} rule {i + 1}"
                    self._classifiers[router.name, i] = _Classifier(rule.classifier, where)

    def _index(self) -> None:
        """Per group, its deployments' states (what :meth:`plan` walks)."""
        self._members = {
            name: tuple(self._states[d.name] for d in group.deployments)
            for name, group in self.config.models.items()
        }

    def adopt(self, previous: Router) -> None:
        """Take over ``previous``'s health (in flight, latency, failures, cooldown) of each
        deployment still configured the same (after a config reload)."""
        for name, state in self._states.items():
            old = previous._states.get(name)
            if old is not None and old is not state and old.deployment == state.deployment:
                self._states[name] = old
        self._index()

    # -- choosing a group -------------------------------------------------------------------

    def resolve(
        self, model: str, body: Body, *, tags: Sequence[str] = (), prompt_tokens: int
    ) -> Route:
        """The group serving ``model`` (a group's or a router's name) for this request.

        Raises :class:`~loopml.llm.errors.UnknownModel` (naming the known models) and
        :class:`~loopml.llm.errors.ContextWindowExceeded` (a prompt over the group's
        ``context_window`` with no ``larger_context`` to go to).
        """
        group = self._groups.get(model)
        if group is not None:
            reason = "model group"
        else:
            router = self._routers.get(model)
            if router is None:
                self.check_known(model)
            assert router is not None
            name, reason = self._pick(
                router.name, router.rules, router.default, body, tags, prompt_tokens
            )
            group = self._groups[name]
        window = group.context_window
        while window is not None and prompt_tokens > window:
            larger = group.larger_context
            if larger is None:
                raise ContextWindowExceeded(
                    f"The prompt has about {prompt_tokens} tokens, more than the "
                    f"{window}-token context window of model {group.name!r}; shorten it"
                    + (f" (asked for {model!r})" if model != group.name else ""),
                    model=model,
                    prompt_tokens=prompt_tokens,
                    context_window=window,
                )
            reason += (
                f"; prompt {prompt_tokens} tokens > context window {window} of "
                f"{group.name!r}: larger_context {larger!r}"
            )
            group = self._groups[larger]
            window = group.context_window
        return Route(requested=model, group=group, reason=reason, prompt_tokens=prompt_tokens)

    def _pick(
        self,
        router: str,
        rules: Sequence[RouterRule],
        default: str,
        body: Body,
        tags: Sequence[str],
        prompt_tokens: int,
    ) -> tuple[str, str]:
        for i, rule in enumerate(rules):
            why: list[str] = []
            if rule.max_prompt_tokens is not None:
                if prompt_tokens > rule.max_prompt_tokens:
                    continue
                why.append(f"prompt {prompt_tokens} tokens <= {rule.max_prompt_tokens}")
            if rule.min_prompt_tokens is not None:
                if prompt_tokens < rule.min_prompt_tokens:
                    continue
                why.append(f"prompt {prompt_tokens} tokens >= {rule.min_prompt_tokens}")
            if rule.tags:
                if not all(tag in tags for tag in rule.tags):
                    continue
                why.append("tags " + ", ".join(rule.tags))
            if rule.classifier is not None:
                if not self._classifiers[router, i](body):
                    continue
                why.append(f"classifier {rule.classifier}")
            return rule.model, f"rule {i + 1}: " + ", ".join(why)
        return default, "default"

    def larger_context(self, route: Route) -> Route | None:
        """The route for a retry after a provider said the prompt is over its context window
        (the group's ``larger_context``), or None when the group declares none."""
        larger = route.group.larger_context
        if larger is None:
            return None
        reason = f"{route.reason}; the provider's context window was exceeded: {larger!r}"
        return Route(route.requested, self._groups[larger], reason, route.prompt_tokens)

    def check_known(self, model: str) -> None:
        """Raise :class:`~loopml.llm.errors.UnknownModel` (naming the known models) unless a
        client may ask for ``model``."""
        if model not in self._groups and model not in self._routers:
            raise UnknownModel(
                f"The model {model!r} does not exist; known models: "
                + (", ".join(self.names()) or "none (add [gateway.models.NAME])"),
                model=model,
            )

    def names(self) -> list[str]:
        """Every model a client may ask for: the groups, then the routers."""
        return [*self._groups, *self._routers]

    # -- ordering deployments ---------------------------------------------------------------

    def plan(self, route: Route) -> list[Deployment]:
        """The deployments to try, in order: the group's, ordered by its strategy, then each
        fallback group's the same way (a fallback whose context window is smaller than the
        prompt is left out; no deployment twice). Deployments in cooldown are left out, unless
        every one is: then they are all tried, the soonest back first, as a last resort."""
        now = self._clock()
        ready: list[Deployment] = []
        cooling: list[DeploymentState] = []
        seen: set[str] = set()
        group = route.group
        self._order(group, now, ready, cooling, seen)
        for name in group.fallbacks:
            fallback = self._groups[name]
            window = fallback.context_window
            if window is not None and route.prompt_tokens > window:
                continue
            self._order(fallback, now, ready, cooling, seen)
        if ready:
            return ready
        cooling.sort(key=lambda s: s.cooldown_until)
        return [s.deployment for s in cooling]

    def _order(
        self,
        group: ModelGroup,
        now: float,
        ready: list[Deployment],
        cooling: list[DeploymentState],
        seen: set[str],
    ) -> None:
        states = []
        for state in self._members[group.name]:
            name = state.deployment.name
            if name in seen:
                continue
            seen.add(name)
            if state.cooldown_until > now:
                cooling.append(state)
            else:
                states.append(state)
        if len(states) > 1:
            strategy = group.strategy
            rand = self._rng.random
            if strategy == "weighted":
                # Efraimidis–Spirakis: sorting by u ** (1 / w) is a weighted shuffle, so the
                # first pick is proportional to weight and the rest follow likewise.
                states.sort(key=lambda s: rand() ** (1.0 / s.deployment.weight), reverse=True)
            elif strategy == "least-busy":
                states.sort(key=lambda s: (s.in_flight, rand()))
            else:  # lowest-latency: untried first (in the order declared), then the fastest
                states.sort(key=lambda s: -1.0 if s.latency_s is None else s.latency_s)
        ready.extend(s.deployment for s in states)

    # -- health -----------------------------------------------------------------------------

    def started(self, deployment: Deployment) -> None:
        """An attempt at ``deployment`` begins (counts towards least-busy)."""
        state = self._states.get(deployment.name)
        if state is not None:
            state.in_flight += 1
            state.requests += 1

    def finished(
        self,
        deployment: Deployment,
        latency_s: float,
        ok: bool,
        kind: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """An attempt ended. ``kind``: the failure's
        :data:`~loopml.llm.errors.FailureKind`. ``cooldown_failures`` failures in a row take
        the deployment out for ``cooldown_seconds``; a rate limit with ``retry_after`` takes
        it out for at least that long; a success puts it back and resets the count.
        ``context_window`` and ``bad_request`` failures are the request's fault: not counted.
        """
        state = self._states.get(deployment.name)
        if state is None:  # a deployment of a config since replaced
            return
        state.in_flight = max(state.in_flight - 1, 0)
        if ok or kind == "timeout":
            previous = state.latency_s
            state.latency_s = (
                latency_s
                if previous is None
                else EWMA_ALPHA * latency_s + (1.0 - EWMA_ALPHA) * previous
            )
        if ok:
            state.failures = 0
            state.cooldown_until = 0.0
            return
        state.errors += 1
        if kind in _NOT_COUNTED:
            return
        now = self._clock()
        state.failures += 1
        if state.failures >= self._cooldown_failures:
            state.cooldown_until = max(state.cooldown_until, now + self._cooldown_seconds)
        if kind == "rate_limit" and retry_after:
            state.cooldown_until = max(state.cooldown_until, now + retry_after)

    def states(self) -> dict[str, dict[str, Any]]:
        """Each deployment's health, by name (for ``/metrics`` and debugging)."""
        now = self._clock()
        return {name: state.to_dict(now) for name, state in self._states.items()}
