"""`python -m sharedml.serving --config serve.yaml`: the same as `sharedml serve` (tests, benchmarks)."""

from .cli import app

app(prog_name="sharedml serve")
