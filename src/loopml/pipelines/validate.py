"""A ready-made ``validate`` task: check a table against a schema, fail the run on errors.

    from pathlib import Path
    from loopml.pipelines import pipeline, validate

    @pipeline
    def train_churn(day: str):
        clean = validate(load(day), Path("contracts/churn.yaml"))   # or a Schema object
        ...

On errors the task fails (``ValidationFailed`` with every failed check), so the pipeline run
is FAILED and everything downstream is skipped. The report is logged to the pipeline's
tracking run as ``validation/<task>.json``. Pass the schema as a ``Path`` (hashed by content,
so editing the contract reruns the task) or as a :class:`~loopml.validation.Schema`.
"""

from __future__ import annotations

import os
from typing import Any

from loopml.pipelines.tasks import task
from loopml.wording import counted


@task(name="validate")
def validate(frame: Any, schema: Any, fail_on_warnings: bool = False) -> Any:
    """Validate ``frame`` against ``schema``; return it unchanged when it passes."""
    from loopml.pipelines.context import current_task, default_workspace_or_none
    from loopml.validation import Schema, ValidationFailed

    contract = schema if isinstance(schema, Schema) else Schema.load(os.fspath(schema))
    report = contract.validate(frame)
    context = current_task()
    ws = default_workspace_or_none() if context is not None else None
    run = ws.runs.active() if ws is not None else None
    if context is not None and run is not None:
        run.log_dict(report.to_dict(), f"validation/{context.node}.json")
    report.raise_for_errors()
    if fail_on_warnings and report.warnings:
        raise ValidationFailed(
            f"{counted(len(report.warnings), 'validation warning')}:\n{report}", report
        )
    return frame
