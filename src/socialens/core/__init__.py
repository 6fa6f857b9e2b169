"""The leaf every other package builds on: types, params base, lazy registries, run layout, YAML
I/O, errors, paths, runtime and progress. It imports nothing of socialens outside ``core``."""
