"""``loopml labels``: delayed outcomes (labels, rewards) of logged predictions, from files
(:func:`loopml.serving.ingest_labels`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from loopml.cli.context import pass_workspace
from loopml.cli.predict import storage_option, storage_options
from loopml.cli.render import emit_json, json_option

if TYPE_CHECKING:
    from loopml.workspace import Workspace


@click.group()
def labels() -> None:
    """Labels and rewards that arrive after the predictions (monitoring and the deployment
    reports join them on request_id)."""


@labels.command("ingest")
@click.argument("file", metavar="FILE")
@click.option(
    "--deployment",
    required=True,
    metavar="NAME",
    help="Whose requests the labels are about (batch scoring logs under the model's name).",
)
@storage_option
@json_option
@pass_workspace
def ingest(
    ws: Workspace, file: str, deployment: str, options: tuple[str, ...], as_json: bool
) -> None:
    """Record the labels in FILE (CSV or Parquet: request_id, label or reward, optional
    time) as feedback on DEPLOYMENT's requests.

    Bad rows are skipped and listed by row number (1 is the first row under the header);
    the good ones are kept. Request ids the prediction log doesn't hold are counted.
    """
    from loopml.serving.labels import ingest_labels

    result = ingest_labels(
        file, deployment, storage_options=storage_options(options) or None, workspace=ws
    )
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(
        f"Ingested {result.ingested} label(s) of {result.rows} row(s) for {deployment} from {file}."
    )
    if result.duplicates:
        click.echo(f"{result.duplicates} row(s) repeated a request id; the last one was kept.")
    if result.unknown:
        click.echo(
            f"{result.unknown} request id(s) are not in {deployment}'s prediction log (kept: "
            "they join once their predictions are logged)."
        )
    if result.bad:
        click.echo(f"{result.bad} bad row(s) skipped:")
        for row, why in result.bad_rows:
            click.echo(f"  row {row}: {why}")
        if result.bad > len(result.bad_rows):
            click.echo(f"  … and {result.bad - len(result.bad_rows)} more")
