"""Developer tools outside the importable library: benchmarks, the memory eval and the synthetic-media generator.

They import `model` and `app`; nothing in `model` or `app` imports them.
"""
