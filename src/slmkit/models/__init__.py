"""The models in memory, in the API process: the manager, the handle on each worker process,
remote (upstream) engines, and the memory estimator (docs/architecture.md)."""
