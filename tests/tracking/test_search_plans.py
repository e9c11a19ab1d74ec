"""search_run_ids picks a plan (walk an index in order, or start from the filter's matches):
every plan must give the same page as the plain query, ties, NaN and missing values included."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from sqlalchemy import insert

from loopml.tracking import search
from loopml.tracking.tables import experiments, latest_metrics, params, runs, tags
from loopml.workspace import Workspace

FILTERS = [
    None,
    "metrics.m > 0.5",
    "metrics.m > 0.95",
    "params.p = 'a'",
    "metrics.m > 0.3 and params.p = 'b'",
    "metrics.m >= 0.2 and params.q = 'z' and tags.t = 'x'",  # narrow, correlated leaves
    "params.p = 'a' or metrics.m < 0.1",
    "metrics.m IS NULL",
    "metrics.m = nan",
    "params.q != 'z' and metrics.m < 0.9",
    "attributes.status = 'FINISHED' and params.p IN ('a', 'c')",
]
ORDERS: list[list[str] | None] = [
    None,
    ["metrics.m DESC"],
    ["metrics.m ASC"],
    ["params.p", "metrics.m DESC"],
    ["params.p DESC"],
    ["attributes.start_time ASC"],
    ["attributes.start_time DESC", "params.q"],
    ["tags.t DESC"],
]
PAGES = [(1, 0), (7, 14), (1000, 0)]
SCOPES: list[list[str] | None] = [["e1"], ["e1", "e2"]]
# Tags: t (3 values), u (40 values, missing on 1 run in 7), g ('a' on 9 runs in 10: a tie
# longer than a walk's reach, so its runs come by their own plan, after the 'b's DESC).
TAG_FILTERS = [
    None,
    "tags.t = 'x'",
    "tags.u LIKE 'u1%' and metrics.m > 0.3",
    "tags.g = 'b' or tags.u IS NULL",
    "tags.g = 'a' and params.p IN ('a', 'b')",
]
TAG_ORDERS: list[list[str] | None] = [
    ["tags.u"],
    ["tags.u DESC", "params.p"],
    ["tags.g"],
    ["tags.g DESC"],
    ["tags.g", "params.p DESC", "metrics.m"],
    ["params.q", "tags.t DESC"],
]
TAG_PAGES = [(1, 0), (7, 35), (20, 25), (1000, 0)]


@pytest.fixture
def many(workspace_factory: Any, request: pytest.FixtureRequest) -> Workspace:
    """300 runs in e1 and 60 in e2: metric values with ties, NaN (NULL) and gaps; a
    low-cardinality param; equal start times (so the id breaks ties); deleted runs."""
    ws: Workspace = workspace_factory(getattr(request, "param", "sqlite-file"))
    rng = random.Random(7)

    def fill(conn: Any) -> None:
        ids = {}
        for name in ("e1", "e2"):
            ids[name] = conn.execute(
                insert(experiments).values(name=name, created_at=0).returning(experiments.c.id)
            ).scalar_one()
        run_rows, param_rows, metric_rows, tag_rows = [], [], [], []
        for i in range(360):
            run_id = f"{rng.getrandbits(64):016x}{i:016x}"
            run_rows.append(
                {
                    "id": run_id,
                    "experiment_id": ids["e1" if i < 300 else "e2"],
                    "name": f"r{i}",
                    "status": "FINISHED" if i % 9 else "FAILED",
                    "start_time": 1_000_000 + i // 3,  # three runs per millisecond
                    "deleted_at": 5 if i % 37 == 0 else None,
                }
            )
            param_rows.append({"run_id": run_id, "key": "p", "value": "abcd"[i % 4]})
            if i % 5:
                param_rows.append({"run_id": run_id, "key": "q", "value": "yz"[i % 11 == 0]})
            if i % 13:
                value = None if i % 17 == 0 else round(rng.random(), 1)  # ties
                metric_rows.append(
                    {"run_id": run_id, "key": "m", "value": value, "step": 0, "timestamp": 0}
                )
            tag_rows.append({"run_id": run_id, "key": "t", "value": "xyz"[i % 3]})
            if i % 7:
                tag_rows.append({"run_id": run_id, "key": "u", "value": f"u{rng.randrange(40):02}"})
            tag_rows.append({"run_id": run_id, "key": "g", "value": "ab"[rng.random() < 0.1]})
        conn.execute(insert(runs), run_rows)
        conn.execute(insert(params), param_rows)
        conn.execute(insert(latest_metrics), metric_rows)
        conn.execute(insert(tags), tag_rows)

    ws.db.transact(fill)
    return ws


def plain(ws: Workspace, *args: Any) -> list[str]:
    """The plain query: no walk, every condition an IN list (what search did before)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search, "_walk_for", lambda order, exp_ids: (None, order))
        mp.setattr(search, "_selective_conditions", lambda conn, expr: {})
        return search.search_run_ids(ws.db, *args)


def check_every_plan(ws: Workspace, quick: bool = False, tags: bool = False) -> int:
    checked = 0
    cases = itertools.product(SCOPES, FILTERS, ORDERS, PAGES, [False, True])
    if quick:
        cases = itertools.product(SCOPES[:1], FILTERS[:6], ORDERS[:4], PAGES[1:2], [False])
    if tags:
        cases = itertools.product(SCOPES, TAG_FILTERS, TAG_ORDERS, TAG_PAGES, [False, True])
    for scope, text, order, (limit, offset), include_deleted in cases:
        args = (scope, text, order, limit, include_deleted, offset)
        expected = plain(ws, *args)
        assert search.search_run_ids(ws.db, *args) == expected, args
        checked += 1
    return checked


def test_the_common_plans_give_the_plain_page(many: Workspace) -> None:
    assert check_every_plan(many, quick=True) == 24


@pytest.mark.slow
def test_every_plan_gives_the_plain_page(many: Workspace) -> None:
    assert check_every_plan(many) == len(SCOPES) * len(FILTERS) * len(ORDERS) * len(PAGES) * 2


@pytest.mark.slow
@pytest.mark.parametrize(("slack", "cap"), [(1, 40), (4, 100_000)])
def test_the_fallbacks_agree(
    many: Workspace, monkeypatch: pytest.MonkeyPatch, slack: int, cap: int
) -> None:
    """No condition taken as narrow on sight, so that the counted plans run: with a short
    first walk and counts capped low, the plain query takes over; with the usual ones, some
    pages come from the counted second walk (checked below)."""
    monkeypatch.setattr(search, "_WALK_SLACK", slack)
    monkeypatch.setattr(search, "_NARROW", 0)
    monkeypatch.setattr(search, "_COUNT_CAP", cap)
    if slack == 1:
        monkeypatch.setattr(search, "_LONG_WALK", 0)  # no walk sized by the first one's matches
    second: list[bool] = []
    real = search._walked

    def spy(*args: Any) -> Any:
        found = real(*args)
        limit, offset, visit = args[-3:]
        if visit != slack * (offset + limit) + 100:
            second.append(found[0] is not None)
        return found

    monkeypatch.setattr(search, "_walked", spy)
    check_every_plan(many)
    assert any(second) if slack == 4 else not second


def test_the_plans_run_as_planned(many: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broad filter sorted by a metric is answered by the walk alone; a narrow one by the
    plain query started from its matches (the walk would visit every run)."""
    walked: list[bool] = []
    real = search._walked

    def spy(*args: Any, **kwargs: Any) -> Any:
        found, more, matched = real(*args, **kwargs)
        walked.append(found is not None)
        return found, more, matched

    monkeypatch.setattr(search, "_walked", spy)
    search.search_run_ids(many.db, ["e1"], "metrics.m > 0.2", ["metrics.m DESC"], 10)
    assert walked == [True]
    walked.clear()
    search.search_run_ids(many.db, ["e1"], None, None, 10)
    assert walked == [True]
    walked.clear()
    search.search_run_ids(many.db, ["e1"], "metrics.m > 0.95", ["metrics.m ASC"], 10)
    assert walked and not walked[-1]


@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"])
def test_a_short_walk_that_saw_some_matches_walks_as_far_as_they_need(
    workspace_factory: Any, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """A filter matching 1 run in 12, sorted by a tag, a page of 20: the first walk (180
    entries) sees 15 matches; the next one goes as far as that rate needs (460) and fills the
    page, without counting and without the plain query (on PostgreSQL a metric's walk isn't
    taken that far: its index lacks run_id)."""
    ws: Workspace = workspace_factory(backend)

    def fill(conn: Any) -> None:
        exp = conn.execute(
            insert(experiments).values(name="e", created_at=0).returning(experiments.c.id)
        ).scalar_one()
        ids = [f"{i:032x}" for i in range(1200)]
        conn.execute(
            insert(runs),
            [
                {"id": r, "experiment_id": exp, "name": r, "status": "FINISHED", "start_time": i}
                for i, r in enumerate(ids)
            ],
        )
        conn.execute(
            insert(latest_metrics),
            [
                {"run_id": r, "key": "m", "value": i / 1200, "step": 0, "timestamp": 0}
                for i, r in enumerate(ids)
            ],
        )
        conn.execute(
            insert(tags),
            [
                {"run_id": r, "key": "k", "value": "y" if i % 12 == 0 else "n"}
                for i, r in enumerate(ids)
            ]
            + [{"run_id": r, "key": "o", "value": f"{i:05}"} for i, r in enumerate(ids)],
        )

    ws.db.transact(fill)
    args = (None, "tags.k = 'y'", ["tags.o DESC"], 20, False, 0)
    expected = plain(ws, *args)
    walks: list[tuple[int, bool]] = []
    real = search._walked

    def spy(*args: Any) -> Any:
        found = real(*args)
        walks.append((args[-1], found[0] is not None))
        return found

    monkeypatch.setattr(search, "_walked", spy)
    monkeypatch.setattr(search, "_count", lambda *a: pytest.fail("counted"))
    page = search.search_run_ids(ws.db, *args)
    assert walks == [(180, False), (460, True)]
    assert page == expected and len(page) == 20


@pytest.mark.slow
@pytest.mark.parametrize("many", ["postgres"], indirect=True)
def test_every_plan_gives_the_plain_page_on_postgres(many: Workspace) -> None:
    check_every_plan(many)


@pytest.mark.parametrize(
    "many", ["sqlite-file", pytest.param("postgres", marks=pytest.mark.slow)], indirect=True
)
def test_tag_orders_and_filters_give_the_plain_page(many: Workspace) -> None:
    """Sorted by a tag (walking its (key, value, run_id) index), by a tie longer than the
    walk's reach (taken by its own plan), filtered on tags: the plain query's page."""
    checked = check_every_plan(many, tags=True)
    assert checked == len(SCOPES) * len(TAG_FILTERS) * len(TAG_ORDERS) * len(TAG_PAGES) * 2


def test_a_long_tie_is_taken_by_its_own_plan(
    many: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sorted by a tag or param of few values, the page comes from the runs before the tie
    and the tie's own newest-first walk, not from sorting every run of the tie."""
    tied: list[list[str] | None] = []
    real = search._with_ties

    def spy(*args: Any) -> Any:
        tied.append(real(*args))
        return tied[-1]

    monkeypatch.setattr(search, "_with_ties", spy)
    for order in (["tags.g"], ["tags.g DESC"], ["params.q DESC"]):
        tied.clear()
        page = search.search_run_ids(many.db, ["e1"], None, order, 10, False, 20)
        assert page == plain(many, ["e1"], None, order, 10, False, 20)
        assert len(tied) == 1 and tied[0] == page, order


def test_a_page_from_many_runs_reads_back_whole(many: Workspace) -> None:
    """search_records over a walked page: params, metrics and tags of exactly those runs."""
    records = many.runs.records(
        experiments=["e1"], filter="metrics.m > 0.5", order_by=["metrics.m DESC"], max_results=5
    )
    assert len(records) == 5
    values = [r["metrics"]["m"] for r in records]
    assert values == sorted(values, reverse=True) and values[-1] > 0.5
    assert all(set(r["params"]) <= {"p", "q"} and r["tags"]["t"] in "xyz" for r in records)
