"""The operator on a cluster: the Kubernetes API client, the Kopf handlers, the operator's
own metrics, its configuration and the RBAC it needs. Only `handlers` imports Kopf."""
