"""How an area's namespace (``ws.data``, ``ws.pipelines``) offers its module-level functions
with the workspace filled in, keeping their exact signatures for mypy.

    class Data(Namespace):
        add = WithWorkspace(versions.add)      # ws.data.add(path) == loopml.data.add(path, workspace=ws)

Cheap to import: areas that load nothing heavy (``loopml data``) use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar, overload

from loopml.exceptions import InvalidInput

if TYPE_CHECKING:
    from loopml.workspace import Workspace

P = ParamSpec("P")
R = TypeVar("R")


class Namespace:
    """An area's namespace on a :class:`~loopml.workspace.Workspace`."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.workspace!r}>"


class WithWorkspace(Generic[P, R]):
    """``function`` as a method of a :class:`Namespace`, called with ``workspace=`` set to
    the namespace's workspace (passing another one is an error)."""

    def __init__(self, function: Callable[P, R]) -> None:
        self.function = function
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = f"{owner.__name__}.{name}"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> WithWorkspace[P, R]: ...

    @overload
    def __get__(self, obj: Namespace, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(
        self, obj: Namespace | None, owner: type | None = None
    ) -> WithWorkspace[P, R] | Callable[P, R]:
        if obj is None:
            return self
        function, workspace, name = self.function, obj.workspace, self.name

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            given = kwargs.setdefault("workspace", workspace)
            if given is not workspace:
                raise InvalidInput(
                    f"{name} already acts on {workspace!r}: leave out workspace=, or call "
                    f"{function.__module__}.{function.__name__}(..., workspace=...) instead."
                )
            return function(*args, **kwargs)

        call.__name__ = call.__qualname__ = name
        call.__doc__ = function.__doc__
        return call
