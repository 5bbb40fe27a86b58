"""`aisvc` (also installed as `kubectl-aisvc`): the command line of aiservice-operator.

Each area keeps its commands in its own module and mounts them here with one line.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="aisvc",
    help="Run, inspect and roll out AIServices, on a cluster or on this machine.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    """Entry point of the `aisvc` and `kubectl-aisvc` executables."""
    app()


if __name__ == "__main__":
    main()
