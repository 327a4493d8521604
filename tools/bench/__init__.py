"""`launch.py bench NAME`: one module per bench, each with `add_arguments(parser)` and `run(args) -> dict`."""
