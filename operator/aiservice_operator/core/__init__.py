"""The pure core: the AIService API, the compiler to Knative objects, status and Events, the
canary analysis and rollout state machine, and audit events. No I/O, no clock, no Kubernetes
client; both executors (the operator on a cluster, `aisvc up` on a laptop) call it."""
