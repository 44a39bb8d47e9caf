"""Benchmarks behind `posext bench`: each job module exposes run(devices, quick) -> list of row dicts."""
