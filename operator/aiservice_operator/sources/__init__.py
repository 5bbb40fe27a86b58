"""Where canary observations come from on a cluster: Prometheus and the event store, read
over HTTP. Both executors use them (the local run reads the same event store)."""
