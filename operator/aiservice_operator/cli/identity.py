"""The user's own Kubernetes token, for an event store in auth mode ``kubernetes``.

`aisvc dlq`, `trace`, `reprocess` and `export` act as the user kubectl acts as: the bearer
token of the current kubeconfig context, resolved by the `kubernetes` client's loader
as kubectl resolves it (a static token or token file, an exec plugin such as a cloud
provider's, an OIDC provider's id token). The store asks the cluster who that is and
lets RBAC decide what they see and may replay.
"""

from __future__ import annotations

import os

from aiservice_operator.cli.targets import kubeconfig_files

BEARER = "Bearer "


class NoToken(Exception):
    """The kubeconfig's current context has no bearer token to send (say, it signs in
    with a client certificate, which the store cannot check)."""


def kubeconfig_token(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The bearer token of ``context`` (default: the current one), or ``None`` without
    a kubeconfig; :class:`NoToken` when the context authenticates without one."""
    from kubernetes import client, config

    _, found = kubeconfig_files(kubeconfig)
    if not found:
        return None
    settings = client.Configuration()
    try:
        config.load_kube_config(
            config_file=os.pathsep.join(found),
            context=context,
            client_configuration=settings,
            persist_config=False,
        )
    except (config.ConfigException, OSError, ValueError) as err:
        raise NoToken(f"cannot read the kubeconfig: {err}") from None
    if settings.refresh_api_key_hook is not None:
        settings.refresh_api_key_hook(settings)  # an exec plugin's token, fresh
    # The client keeps it under "BearerToken" (older releases: "authorization").
    header = str(settings.api_key.get("BearerToken") or settings.api_key.get("authorization") or "")
    if not header.startswith(BEARER) or not header[len(BEARER) :].strip():
        raise NoToken(
            "the kubeconfig context signs in without a bearer token (a client certificate?); "
            "pass --token $(kubectl create token SERVICEACCOUNT) or set AISVC_EVENT_STORE_TOKEN"
        )
    return header[len(BEARER) :].strip()
