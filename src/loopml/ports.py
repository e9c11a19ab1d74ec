"""Whether a server can listen on a host and port, checked before it starts: a port another
process listens on is one clear error (:class:`PortInUse`) rather than uvicorn's bind error
and exit status 3. Used by ``loopml serve``, ``loopml server``, ``loopml gateway serve`` and
``loopml features serve``, with one worker or several."""

from __future__ import annotations

import errno
import socket

from loopml.exceptions import InvalidInput


class PortInUse(InvalidInput):
    """Another process listens on the port a server was told to use."""


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` when ``port`` on ``host`` is taken, or
    :class:`~loopml.exceptions.InvalidInput` when the address can't be listened on at all.
    The probe binds as uvicorn does (``SO_REUSEADDR``), so a port whose last connections
    are still closing (TIME_WAIT) counts as free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"Cannot serve on host {host!r}: {exc.strerror}.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"Port {port} on {host} is in use (another server?): stop it or pass --port N."
                ) from None
            raise InvalidInput(
                f"Cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --host "
                "or --port."
            ) from None
