"""Events: what is stored, and what a bad event says."""

from __future__ import annotations

import pytest

from loopml.exceptions import InvalidValue
from loopml.pipelines import emit_event, list_events
from loopml.workspace import Workspace


def test_a_huge_subject_is_refused_without_echoing_it_whole(pws: Workspace) -> None:
    subject = "s" * 100_000
    with pytest.raises(InvalidValue) as info:
        emit_event("alert", subject=subject)
    message = str(info.value)
    assert len(message) < 300
    assert "at most 250 characters" in message and "(100000 characters)" in message
    with pytest.raises(InvalidValue) as kind:
        emit_event("k" * 5000)
    assert len(str(kind.value)) < 300
    assert list_events(workspace=pws) == []


def test_events_are_stored_in_order(pws: Workspace) -> None:
    first = emit_event("alert", subject="churn", payload={"psi": 0.3})
    second = emit_event("alert")
    events = list_events("alert", workspace=pws)
    assert [e.id for e in events] == [first, second]
    assert events[0].payload == {"psi": 0.3} and events[1].subject is None
