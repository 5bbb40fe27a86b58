"""`aisvc` (also installed as `kubectl-aisvc`): the command line of aiservice-operator.

Each area keeps its commands in its own module and mounts them here with one line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from aiservice_operator.cli import decisions, dlq, fn, local, rollout
from aiservice_operator.core.compile import CompileOptions, steady_state, to_yaml
from aiservice_operator.core.spec import SpecError, parse

app = typer.Typer(
    name="aisvc",
    help="Run, inspect and roll out AIServices, on a cluster or on this machine.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Run, inspect and roll out AIServices, on a cluster or on this machine."""


def _documents(path: str) -> list[tuple[str, Any]]:
    """(label, document) for every non-empty YAML document in a file (`-`: stdin)."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    return [(f"{path} (document {i + 1})", d) for i, d in enumerate(docs)]


@app.command()
def render(
    files: Annotated[
        list[str], typer.Option("-f", "--filename", help="AIService YAML file; `-` reads stdin.")
    ],
    event_store_url: Annotated[
        str, typer.Option(help="Base URL of the event store (the default dead-letter sink).")
    ] = CompileOptions.event_store_url,
    cluster_domain: Annotated[str, typer.Option(help="The cluster's DNS domain.")] = (
        CompileOptions.cluster_domain
    ),
) -> None:
    """Print the Knative objects the operator creates for AIServices.

    Shows the steady state: every model's revision is taken as ready, so traffic is the
    spec's (a rollout at its start: all events on the stable model). While a revision is
    still starting, the operator briefly routes to the revisions that are already ready.
    """
    options = CompileOptions(event_store_url=event_store_url, cluster_domain=cluster_domain)
    objects: list[dict[str, Any]] = []
    failed = False
    for path in files:
        try:
            documents = _documents(path)
        except (OSError, yaml.YAMLError) as err:
            typer.echo(f"{path}: cannot read: {err}", err=True)
            failed = True
            continue
        for label, document in documents:
            if not isinstance(document, dict):
                typer.echo(f"{label}: not a YAML mapping", err=True)
                failed = True
                continue
            try:
                objects += steady_state(parse(document), options).objects()
            except SpecError as err:
                for field, message in err.errors:
                    typer.echo(f"{label}: {field}: {message}", err=True)
                failed = True
    if failed:
        raise typer.Exit(code=1)
    typer.echo(to_yaml(objects), nl=False)


local.register(app)  # aisvc up, aisvc send
app.add_typer(dlq.app, name="dlq")  # aisvc dlq list|show|replay|stats
app.add_typer(fn.app, name="fn")  # aisvc fn serve
rollout.register(app)  # aisvc promote|abort|pause|resume|status
decisions.register(app)  # aisvc trace|reprocess|export


def main() -> None:
    """Entry point of the `aisvc` and `kubectl-aisvc` executables."""
    app()


if __name__ == "__main__":
    main()
