"""`aisvc` (also installed as `kubectl-aisvc`): the command line of aiservice-operator.

Each area keeps its commands in its own module and mounts them here with one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from aiservice_functions.sink_key import load_sink_key

from aiservice_operator.cli import decisions, dlq, fn, local, rollout
from aiservice_operator.cli.common import PlainErrorsGroup, one_line
from aiservice_operator.core.compile import CompileOptions, steady_state, to_yaml
from aiservice_operator.core.spec import API_GROUP, API_VERSION, SpecError, parse
from aiservice_operator.local.manifests import unreadable

app = typer.Typer(
    name="aisvc",
    help="Run, inspect and roll out AIServices, on a cluster or on this machine.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    cls=PlainErrorsGroup,  # errors as one plain line on stderr, never wrapped
)


@app.callback()
def _root() -> None:
    """Run, inspect and roll out AIServices, on a cluster or on this machine."""


YAML_SUFFIXES = (".yaml", ".yml")


def _files(path: str) -> list[str]:
    """`path` itself, or the YAML files of a directory (sorted, not recursive)."""
    if path != "-" and Path(path).is_dir():
        return sorted(str(p) for p in Path(path).iterdir() if p.suffix in YAML_SUFFIXES)
    return [path]


def _documents(path: str) -> list[tuple[str, Any]]:
    """(label, document) for every non-empty YAML document in a file (`-`: stdin).

    The stream keeps its name, so a YAML error says which file (and line) it is in."""
    if path == "-":
        docs = list(yaml.safe_load_all(sys.stdin))
    else:
        with open(path, encoding="utf-8") as stream:
            docs = list(yaml.safe_load_all(stream))
    kept = [d for d in docs if d is not None]
    return [(f"{path} (document {i + 1})", d) for i, d in enumerate(kept)]


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
    sink_key_file: Annotated[
        str | None,
        typer.Option(
            help="File holding the event store's sink key (default: "
            "$AISVC_EVENT_STORE_SINK_KEY_FILE, else $AISVC_EVENT_STORE_SINK_KEY): dead-letter "
            "sink URLs then carry the credential the operator puts in them."
        ),
    ] = None,
) -> None:
    """Print the Knative objects the operator creates for AIServices.

    Shows the steady state: every model's revision is taken as ready, so traffic is the
    spec's (a rollout at its start: all events on the stable model). While a revision is
    still starting, the operator briefly routes to the revisions that are already ready.
    """
    try:
        sink_key = load_sink_key(key_file=sink_key_file)
    except (OSError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None
    options = CompileOptions(
        event_store_url=event_store_url, cluster_domain=cluster_domain, sink_key=sink_key
    )
    objects: list[dict[str, Any]] = []
    failed = False
    seen: dict[tuple[str, str], str] = {}
    paths: list[str] = []
    for given in files:
        found = _files(given)
        if not found:
            _problem(f"{given}: no .yaml or .yml files in this directory")
            failed = True
        paths += found
    for path in paths:
        try:
            documents = _documents(path)
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
            _problem(f"{path}: cannot read: {unreadable(err)}")
            failed = True
            continue
        if not documents:
            _problem(f"{path}: no YAML documents (an empty file?)")
            failed = True
        for label, document in documents:
            if not isinstance(document, dict):
                _problem(f"{label}: not a YAML mapping")
                failed = True
                continue
            try:
                ais = parse(document)
            except SpecError as err:
                for field, message in err.errors:
                    _problem(f"{label}: {field}: {message}")
                failed = True
                continue
            key = (ais.namespace, ais.name)
            if key in seen:
                _problem(
                    f"{label}: AIService {ais.namespace}/{ais.name} is given twice "
                    f"(first in {seen[key]})"
                )
                failed = True
                continue
            seen[key] = label
            objects += steady_state(ais, options).objects()
    if failed:
        raise typer.Exit(code=1)
    typer.echo(to_yaml(objects), nl=False)


def _problem(message: str) -> None:
    typer.echo(f"error: {one_line(message)}", err=True)


@app.command()
def version(
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
) -> None:
    """Print the versions of aisvc, its API and Python."""
    info = {
        "aisvc": _package_version(),
        "api": f"{API_GROUP}/{API_VERSION}",
        "python": sys.version.split()[0],
    }
    if output == "json":
        typer.echo(json.dumps(info))
    elif output == "text":
        typer.echo(f"aisvc {info['aisvc']} (API {info['api']}, Python {info['python']})")
    else:
        typer.echo(f"error: --output must be text or json, got {output!r}", err=True)
        raise typer.Exit(code=2)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("aiservice-operator")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


local.register(app)  # aisvc up, aisvc send
app.add_typer(dlq.app, name="dlq")  # aisvc dlq list|show|replay|stats
app.add_typer(fn.app, name="fn")  # aisvc fn serve
rollout.register(app)  # aisvc promote|abort|pause|resume|status|list
decisions.register(app)  # aisvc trace|reprocess|export


def main() -> None:
    """Entry point of the `aisvc` and `kubectl-aisvc` executables."""
    app()


if __name__ == "__main__":
    main()
