"""`aisvc fn serve`: run one function on this machine exactly as its container runs it."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Run a CloudEvents function locally, the way its container runs it.")


@app.command()
def serve(
    entrypoint: Annotated[
        str, typer.Argument(help="function module, e.g. aiservice_functions.fraud")
    ],
    model: Annotated[
        str | None, typer.Option(help="model URI or local path (default: the bundled model)")
    ] = None,
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    sha256: Annotated[str | None, typer.Option(help="sha256 the model file must match")] = None,
    model_version: Annotated[
        str | None, typer.Option(help="version sent back as the 'modelversion' extension")
    ] = None,
    reply_type: Annotated[
        str | None, typer.Option(help="CloudEvent type of replies (empty: no reply)")
    ] = None,
) -> None:
    """Serve ENTRYPOINT as CloudEvents over HTTP, as its container does, until Ctrl-C."""
    # Imported here: torch and the runtime load only when a function is served.
    from aiservice_functions.runtime.server import serve as serve_function

    try:
        serve_function(
            entrypoint,
            model,
            port,
            host,
            model_sha256=sha256,
            model_version=model_version,
            reply_type=reply_type,
        )
    except ValueError as err:  # bad URI, bad configuration: say which, exit non-zero
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
