"""The `aisvc` command (also `kubectl aisvc`): one module per command group, wired in
`main`. The top layer: it may use the cluster, the local executor and the core."""
