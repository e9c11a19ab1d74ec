"""Which variant of a deployment answers a request, and which score it off the response path.

:func:`assign` is a pure function of the deployment's configuration and the request key (the
value of the deployment's key field, else the request id), so every server replica routes a
request alike and a user stays on one variant::

    routing = assign(deployment, "user-42")
    routing.variant.name        # 'canary': it answers
    routing.off_path            # (): nothing scores this request after the response

The key hashes (BLAKE2b of ``"<deployment>:<key>"``) to a bucket in [0, 100). The variants
that answer (roles ``candidate``, ``variant``, ``primary``, in that order, each in its
declared order) own consecutive ranges of the buckets, as wide as their weights. A candidate
owns the *low* range, so ramping a canary from 5 to 25 percent keeps every key of the first
5 on the candidate and moves only keys from the primary to it. ``shadow`` variants score every
request off the response path (shadow and champion/challenger); ``standby`` variants get
nothing (blue-green).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from loopml.serving.deployments import Deployment, Variant

#: The order in which answering roles own the bucket ranges, low buckets first.
_ANSWER_ORDER = {"candidate": 0, "variant": 1, "primary": 2}
_SPAN = 2.0**64


@dataclass(frozen=True)
class Routing:
    """Where one request goes: ``variant`` answers it; each of ``off_path`` scores the same
    request after the response is sent (its latency is not the caller's); ``bucket`` is the
    key's place in [0, 100)."""

    variant: Variant
    off_path: tuple[Variant, ...]
    bucket: float


def bucket(deployment: str, key: str) -> float:
    """The key's place in [0, 100) for ``deployment``: stable across processes and machines.

    >>> bucket("churn", "user-42") == bucket("churn", "user-42")
    True
    >>> 0 <= bucket("churn", "user-42") < 100
    True
    """
    digest = hashlib.blake2b(f"{deployment}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SPAN * 100.0


def answering(deployment: Deployment) -> tuple[Variant, ...]:
    """The variants that answer traffic, in the order their bucket ranges are laid out."""
    ranked = [
        (rank, index, v)
        for index, v in enumerate(deployment.variants)
        if (rank := _ANSWER_ORDER.get(v.role)) is not None
    ]
    return tuple(v for _, _, v in sorted(ranked, key=lambda item: item[:2]))


def assign(deployment: Deployment, request_key: str) -> Routing:
    """Route the request keyed ``request_key`` (see the module docstring)."""
    place = bucket(deployment.name, request_key)
    off_path = tuple(v for v in deployment.variants if v.role == "shadow")
    edge = 0.0
    last: Variant | None = None
    for variant in answering(deployment):
        if variant.weight <= 0:
            continue
        edge += variant.weight
        last = variant
        if place < edge:
            return Routing(variant, off_path, place)
    # Weights add up to 100 within rounding; a bucket above a sum of 99.99999... goes to
    # the last variant with traffic.
    if last is None:  # unreachable for a valid Deployment: some answering weight is > 0
        last = deployment.primary
    return Routing(last, off_path, place)
