"""Tasks: what an example's target is and everything that follows from it (how to split it
stratified, what an LLM prompt asks, how an answer is parsed, which metrics, which report tables,
which serving response). One module per task; the registry is ``socialens.core.registry.TASKS``."""
