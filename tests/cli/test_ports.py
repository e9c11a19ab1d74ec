"""A port another process listens on is one ``error:`` line (exit 1) for every command that
starts a server, not uvicorn's bind error and exit status 3."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from click.testing import Result

from loopml.exceptions import InvalidInput
from loopml.ports import PortInUse, ensure_port_free
from loopml.workspace import Workspace


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def test_a_listening_port_is_in_use_and_a_free_one_is_not(busy_port: int) -> None:
    with pytest.raises(PortInUse, match=f"Port {busy_port} on 127.0.0.1 is in use"):
        ensure_port_free("127.0.0.1", busy_port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    ensure_port_free("127.0.0.1", free)
    with pytest.raises(InvalidInput, match="Cannot serve on host"):
        ensure_port_free("no-such-host.invalid", free)


@pytest.mark.parametrize(
    "command",
    [
        ("server",),
        ("server", "--workers", "2"),
        ("features", "serve"),
        ("gateway", "serve"),
        ("gateway", "serve", "--workers", "2"),
    ],
)
def test_every_server_command_refuses_a_port_in_use_in_one_line(
    workspace: Workspace,
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    busy_port: int,
    command: tuple[str, ...],
) -> None:
    result = invoke(*command, "--port", str(busy_port))
    assert error_lines(result) == [
        f"error: Port {busy_port} on 127.0.0.1 is in use (another server?): stop it or pass "
        "--port N."
    ]
