"""Pieces of the operator scale benchmark: the API server process and the workload."""
