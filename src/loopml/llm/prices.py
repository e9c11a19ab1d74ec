"""What tokens cost: the price table shipped with loopml, and the cost of a request.

Prices are USD per 1M tokens, list prices as of :data:`PRICES_AS_OF` (standard tier, no batch
discount; Anthropic's ``cache_write`` is the 5-minute cache write). Override or add models in
``[gateway.prices."MODEL"]``; a model found in neither costs 0 and the gateway warns once.

>>> from loopml.llm.types import Usage
>>> round(cost_usd(Usage(input_tokens=1000, output_tokens=500), PRICES["gpt-4o-mini"]), 8)
0.00045
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from loopml.llm.config import Deployment, Price
from loopml.llm.types import Usage

#: The day the shipped prices were last checked against the providers' price pages.
PRICES_AS_OF = "2026-11-01"

#: Model -> price, USD per 1M tokens.
PRICES: Mapping[str, Price] = {
    # OpenAI: cached input is the prompt-cache read price; OpenAI charges nothing to write.
    "gpt-4o": Price(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4o-mini": Price(input=0.15, cached_input=0.075, output=0.60),
    "gpt-4.1": Price(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, cached_input=0.025, output=0.40),
    "o1": Price(input=15.00, cached_input=7.50, output=60.00),
    "o3": Price(input=2.00, cached_input=0.50, output=8.00),
    "o3-mini": Price(input=1.10, cached_input=0.55, output=4.40),
    "o4-mini": Price(input=1.10, cached_input=0.275, output=4.40),
    "gpt-5": Price(input=1.25, cached_input=0.125, output=10.00),
    "gpt-5-mini": Price(input=0.25, cached_input=0.025, output=2.00),
    "gpt-5-nano": Price(input=0.05, cached_input=0.005, output=0.40),
    "text-embedding-3-small": Price(input=0.02, output=0.0),
    "text-embedding-3-large": Price(input=0.13, output=0.0),
    "text-embedding-ada-002": Price(input=0.10, output=0.0),
    # Anthropic: cache reads at 0.1x input, 5-minute cache writes at 1.25x input.
    "claude-opus-4": Price(input=15.00, cached_input=1.50, cache_write=18.75, output=75.00),
    "claude-opus-4-1": Price(input=15.00, cached_input=1.50, cache_write=18.75, output=75.00),
    "claude-sonnet-4": Price(input=3.00, cached_input=0.30, cache_write=3.75, output=15.00),
    "claude-sonnet-4-5": Price(input=3.00, cached_input=0.30, cache_write=3.75, output=15.00),
    "claude-3-7-sonnet": Price(input=3.00, cached_input=0.30, cache_write=3.75, output=15.00),
    "claude-3-5-sonnet": Price(input=3.00, cached_input=0.30, cache_write=3.75, output=15.00),
    "claude-haiku-4-5": Price(input=1.00, cached_input=0.10, cache_write=1.25, output=5.00),
    "claude-3-5-haiku": Price(input=0.80, cached_input=0.08, cache_write=1.00, output=4.00),
    "claude-3-haiku": Price(input=0.25, cached_input=0.03, cache_write=0.30, output=1.25),
}

# "gpt-4o-2024-08-06", "claude-sonnet-4-20250514", "claude-3-5-haiku-latest" -> the model.
_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def _candidates(name: str) -> list[str]:
    """``name``, then without a provider prefix (``openai/gpt-4o``), then without a date."""
    names = [name]
    bare = name.rsplit("/", 1)[-1]
    if bare != name:
        names.append(bare)
    undated = _DATED.sub("", bare)
    if undated != bare:
        names.append(undated)
    return names


def price_for(deployment: Deployment, overrides: Mapping[str, Price]) -> Price | None:
    """The price of ``deployment``'s tokens: ``[gateway.prices]`` first, then :data:`PRICES`,
    looked up by ``deployment.price`` (else ``deployment.model``), also without a provider
    prefix (``openai/gpt-4o``) and a dated suffix (``gpt-4o-2024-08-06`` -> ``gpt-4o``).

    None: unknown (the gateway counts its cost as 0 and warns once). Look it up once per
    deployment, not per request.
    """
    return lookup(deployment.price or deployment.model, overrides)


def lookup(name: str, overrides: Mapping[str, Price] = {}) -> Price | None:  # noqa: B006
    """The price of model ``name`` (see :func:`price_for`); None: unknown."""
    names = _candidates(name)
    for table in (overrides, PRICES):
        for name in names:
            price = table.get(name)
            if price is not None:
                return price
    return None


def cost_usd(usage: Usage, price: Price | None) -> float:
    """USD for ``usage`` at ``price``: uncached input at ``input``, cache reads at
    ``cached_input``, cache writes at ``cache_write`` (both default ``input``), output less
    reasoning at ``output`` and reasoning at ``reasoning`` (default ``output``). 0 when the
    price is unknown.

    >>> p = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    >>> cost_usd(Usage(input_tokens=1_000_000, cached_read_tokens=1_000_000), p)
    0.3
    """
    if price is None:
        return 0.0
    cached_read = usage.cached_read_tokens
    cached_write = usage.cached_write_tokens
    uncached = max(usage.input_tokens - cached_read - cached_write, 0)
    reasoning = usage.reasoning_tokens
    visible = max(usage.output_tokens - reasoning, 0)
    micro = (
        uncached * price.input
        + cached_read * (price.input if price.cached_input is None else price.cached_input)
        + cached_write * (price.input if price.cache_write is None else price.cache_write)
        + visible * price.output
        + reasoning * (price.output if price.reasoning is None else price.reasoning)
    )
    return micro / 1e6


def estimate_cost_usd(input_tokens: int, max_output_tokens: int, price: Price | None) -> float:
    """The most a request can cost before it is sent: every input token uncached and
    ``max_output_tokens`` generated (what budgets are checked against). 0 when unknown."""
    if price is None:
        return 0.0
    return (input_tokens * price.input + max_output_tokens * price.output) / 1e6
