"""What a request means, in the API process: the parameter table, model profiles, the one
answer pipeline, reasoning, tools and output schemas (docs/architecture.md)."""
