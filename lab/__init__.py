"""The lab's tooling: the experiment runner, its stored records, the report, compare and pin.

`python -m lab COMMAND` (or `scripts/lab COMMAND`, which prepares .venv first). The experiments are
one module each in lab/experiments/; the servers, clients and locustfiles beside this package are
what they run and measure.
"""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
