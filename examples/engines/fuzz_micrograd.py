"""Fuzz micrograd against gradcheck's exact oracle: docs/engines.md.

Run from the repository's root: ``python examples/engines/fuzz_micrograd.py``.
Hypothesis draws random models that use only the engine's functions, and
shrinks the first one on which the broken engine disagrees to the smallest.
"""

import sys
from pathlib import Path

from hypothesis import HealthCheck, find, settings

sys.path.insert(0, str(Path(__file__).parent))

from micrograd_engine import broken_engine, engine  # noqa: E402

import gradcheck as gc  # noqa: E402
from gradcheck import strategies as gst  # noqa: E402

BUDGET = settings(
    max_examples=200, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)


def disagrees(spec, against):
    try:
        gc.assert_agree(gc.Model.from_dict(spec), against=against, points=1)
    except AssertionError:
        return True
    return False


right, broken = engine(), broken_engine()
print("functions:", ", ".join(right.functions))
smallest = find(
    gst.models(functions=broken.functions, vectors=False),
    lambda spec: disagrees(spec, {"broken": broken}),
    settings=BUDGET,
)
print("smallest failing model:", smallest)
print("the right engine on it:", "agrees" if not disagrees(smallest, {"micrograd": right}) else "disagrees")
