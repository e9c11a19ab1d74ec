"""``ws.models`` of a workspace that is a loopml server: :class:`RemoteModels`, a
:class:`loopml.registry.Models` with the same methods and return types.

Registering packages the model here (its files streamed to the server's blob store) and
records the version on the server; loading fetches the package into the local model cache;
promotion runs the server's gate (its ``[gates.NAME]`` policy and holdout), so the verdict
is the one any other client would get. These need the server: nothing is spooled.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Any

from loopml.client import wire
from loopml.client.errors import not_served
from loopml.client.transport import segment
from loopml.registry import versions as v
from loopml.registry.api import Models

if TYPE_CHECKING:
    from loopml.client.session import Session
    from loopml.registry import gates
    from loopml.workspace import Workspace


class RemoteModels(Models):
    """``ws.models`` through a loopml server (see the module's docstring)."""

    def __init__(self, workspace: Workspace, session: Session) -> None:
        super().__init__(workspace)
        self._session = session

    def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self._session.transport.call(method, path, body, **kw)

    def register(
        self,
        name: str,
        model: Any = None,
        run_id: str | None = None,
        artifact_path: str | None = None,
        input_example: Any = None,
        *,
        artifacts: dict[str, str] | None = None,
        description: str | None = None,
        flavor: str | None = None,
        schema: Any = None,
        features: Any = None,
        reference_data: Any = None,
    ) -> v.ModelVersion:
        """Register a new version of ``name`` on the server (see ``Models.register``).
        ``schema``, ``features`` and ``reference_data`` are not available over HTTP yet."""
        for given, what in (
            (schema, "register_model(schema=...)"),
            (features, "register_model(features=...)"),
            (reference_data, "register_model(reference_data=...)"),
        ):
            if given is not None:
                raise not_served(what)
        v.check_name(name, "model name")
        if run_id is None:
            active = self._ws.runs.active()
            run_id = active.id if active is not None else None
        if run_id is not None:
            self._ws.runs.flush()  # a run started while the server was away reaches it first
            self._ws.runs.get(run_id)  # RunNotFound for a bad id
        package = self._package(
            name, model, run_id, artifact_path, input_example, artifacts, flavor
        )
        answer = self._call(
            "POST",
            f"/models/{segment(name)}/versions",
            {
                "flavor": package.flavor.name,
                "digest": package.digest,
                "run_id": run_id,
                "signature": package.signature.to_dict() if package.signature else None,
                "environment": package.environment,
                "description": description,
            },
        )
        return wire.version_from_json(answer)

    # The blob store and the cache are the seams register() and load() use: the server's
    # blobs, fetched into this machine's cache.
    @property
    def blobs(self) -> Any:
        return self._session.blobs

    # -- reading -----------------------------------------------------------------------------

    def get(self, uri: str) -> v.ModelVersion:
        return wire.version_from_json(self._call("GET", "/model-version", params={"uri": uri}))

    def list(self) -> builtins.list[dict[str, Any]]:
        answer = self._call("GET", "/models")
        return [wire.model_summary_from_json(m) for m in answer["models"]]

    def versions(self, name: str) -> builtins.list[v.ModelVersion]:
        answer = self._call("GET", f"/models/{segment(name)}/versions")
        return [wire.version_from_json(m) for m in answer["versions"]]

    def history(self, name: str) -> builtins.list[v.ModelEvent]:
        """Every registration, stage and alias move, gate verdict, approval and rollback."""
        answer = self._call("GET", f"/models/{segment(name)}/history")
        return [wire.event_from_json(e) for e in answer["events"]]

    def state_at(self, name: str, at: datetime) -> dict[str, Any]:
        """Time travel: which version was Production (and each alias) at ``at``."""
        answer = self._call("GET", f"/models/{segment(name)}/state", params={"at": at.isoformat()})
        return {**answer, "at": wire.parse_when(answer["at"])}

    def verdict(self, uri: str) -> gates.Verdict | None:
        """The latest gate verdict recorded for a version."""
        from loopml.registry import gates

        answer = self._call("GET", "/model-version/verdict", params={"uri": uri})
        found = answer.get("verdict")
        return gates.Verdict.from_dict(found) if found else None

    def lineage(self, uri: str) -> dict[str, Any]:
        """version → run → params, metrics, code commit, environment, input data versions →
        gate verdict → who promoted it (computed by the server)."""
        answer: dict[str, Any] = self._call("GET", "/model-version/lineage", params={"uri": uri})
        return answer

    # -- aliases, stages, the gate ---------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._call("POST", f"/models/{segment(name)}/aliases", {"alias": alias, "version": version})

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", f"/models/{segment(name)}/aliases/{segment(alias)}")

    def policy(self, name: str) -> gates.GatePolicy | None:
        """The server's ``[gates.<name>]`` policy, if any."""
        from loopml.registry import gates

        answer = self._call("GET", f"/models/{segment(name)}/policy")
        found = answer.get("policy")
        return gates.GatePolicy.from_dict(found, f"the server's [gates.{name}]") if found else None

    def promote(
        self,
        name: str,
        version: int,
        to: str = "production",
        *,
        policy: gates.GatePolicy | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> gates.Verdict | None:
        """Move ``version`` to a stage; Production goes through the server's gate (raises
        :class:`~loopml.exceptions.PromotionBlocked` with the verdict when it fails)."""
        from loopml.registry import gates

        answer = self._call(
            "POST",
            f"/models/{segment(name)}/versions/{int(version)}/promote",
            {
                "to": to,
                "force": force,
                "reason": reason,
                "policy": policy.to_dict() if policy is not None else None,
            },
            timeout=600.0,  # the gate scores both models on the holdout
        )
        found = answer.get("verdict")
        return gates.Verdict.from_dict(found) if found else None

    def approve(self, name: str, version: int, reason: str | None = None) -> gates.Verdict:
        """Approve a version whose gate passed with ``require_approval``; moves Production."""
        from loopml.registry import gates

        answer = self._call(
            "POST", f"/models/{segment(name)}/versions/{int(version)}/approve", {"reason": reason}
        )
        return gates.Verdict.from_dict(answer["verdict"])

    def rollback(self, name: str, reason: str | None = None) -> int:
        """Move Production back to the version that held it before; returns that version."""
        answer = self._call("POST", f"/models/{segment(name)}/rollback", {"reason": reason})
        return int(answer["version"])
