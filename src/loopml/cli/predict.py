"""``loopml predict``: score Parquet/CSV files with a registry model into Parquet (batch
scoring, :func:`loopml.serving.batch_predict`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.render import emit_json, format_duration, json_option

if TYPE_CHECKING:
    from loopml.workspace import Workspace


def storage_options(options: tuple[str, ...]) -> dict[str, Any]:
    """``-o KEY=VALUE`` options as fsspec storage options (``true``/``false`` as booleans)."""
    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--option takes KEY=VALUE, got {item!r}.")
        parsed[key] = {"true": True, "false": False}.get(value.lower(), value)
    return parsed


def storage_option(f: Any) -> Any:
    return click.option(
        "--option",
        "-o",
        "options",
        multiple=True,
        metavar="KEY=VALUE",
        help="fsspec storage option for object storage, e.g. -o endpoint_url=http://127.0.0.1:9000 "
        "(repeatable; AWS_ENDPOINT_URL works too).",
    )(f)


@click.command()
@click.argument("model_ref", metavar="MODEL_REF")
@click.option(
    "--input",
    "input_path",
    required=True,
    metavar="PATH_OR_GLOB",
    help="A Parquet or CSV file, a folder of them, or a glob (quote it); local or s3://...",
)
@click.option(
    "--output",
    required=True,
    metavar="PATH",
    help="NAME.parquet for one file, any other path for a folder of part files.",
)
@click.option(
    "--executor",
    default="threads",
    show_default=True,
    metavar="threads|processes|ray",
    help="Where chunks are scored (also ray://host:port).",
)
@click.option(
    "--chunk-rows",
    default=100_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows per chunk: what is in memory per worker.",
)
@click.option(
    "--deployment",
    metavar="NAME",
    help="Whose prediction log the rows go to. Default: the model's name.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing output once the new one is complete."
)
@click.option("--no-log", is_flag=True, help="Don't log the predictions.")
@storage_option
@json_option
@pass_workspace
def predict(
    ws: Workspace,
    model_ref: str,
    input_path: str,
    output: str,
    executor: str,
    chunk_rows: int,
    deployment: str | None,
    overwrite: bool,
    no_log: bool,
    options: tuple[str, ...],
    as_json: bool,
) -> None:
    """Score files with MODEL_REF (churn@production, churn/4) into Parquet.

    The input is streamed in chunks (files larger than memory are fine) and checked against
    the model's signature; the output holds the input columns plus prediction,
    model_version and request_id, and appears only once every row is scored. Predictions
    are logged like online ones, with a batch id.
    """
    from loopml.cli.progress import progress_bar
    from loopml.serving.batch import OutputExists, batch_predict

    try:
        with progress_bar("Scoring", unit="row", show_bytes=False, enabled=not as_json) as tracker:
            result = batch_predict(
                model_ref,
                input_path,
                output,
                executor=executor,
                chunk_rows=chunk_rows,
                deployment=deployment,
                overwrite=overwrite,
                log=not no_log,
                storage_options=storage_options(options) or None,
                progress=tracker,
                workspace=ws,
            )
    except OutputExists as exc:  # named with this command's option, not the Python argument
        raise OutputExists(exc.output, option="--overwrite") from None
    if as_json:
        emit_json(result.to_dict())
        return
    rows = f"{result.rows} row{'' if result.rows == 1 else 's'}"
    files = f"{result.files} file{'' if result.files == 1 else 's'}"
    click.echo(
        f"Scored {rows} from {files} with {result.model} in "
        f"{format_duration(result.seconds)} → {result.output}"
    )
    if result.logged:
        click.echo(
            f"Logged for deployment {result.deployment} as batch {result.batch_id} "
            f"(request ids batch-{result.batch_id}-<row>)."
        )
