"""Models the benchmark runs: tanh MLPs of a given size, and small smooth models."""

from __future__ import annotations

from typing import Any

import numpy as np

import gradcheck as gc


def mlp_spec(hidden: int, inputs: int = 10, samples: int = 32, seed: int = 0) -> dict[str, Any]:
    """One-hidden-layer tanh MLP, squared error: ``hidden * (inputs + 2) + 1`` params."""
    rng = np.random.default_rng(seed)
    return {
        "name": f"mlp_{inputs}x{hidden}",
        "params": {
            "W1": (rng.standard_normal((hidden, inputs)) / np.sqrt(inputs)).tolist(),
            "b1": (0.1 * rng.standard_normal(hidden)).tolist(),
            "w2": (rng.standard_normal(hidden) / np.sqrt(hidden)).tolist(),
            "b2": 0.1,
        },
        "data": {
            "x": rng.standard_normal((samples, inputs)).tolist(),
            "y": rng.standard_normal(samples).tolist(),
        },
        "model": {
            "h": "tanh(W1 @ x + b1)",
            "y_pred": "dot(w2, h) + b2",
            "loss": "(y_pred - y)**2",
        },
    }


def mlp(n_params: int, inputs: int = 10, samples: int = 32) -> gc.Model:
    """The tanh MLP with about ``n_params`` parameters."""
    hidden = max(1, round((n_params - 1) / (inputs + 2)))
    if n_params < 40:
        inputs = max(1, round((n_params - 1) / 3) - 1)
        hidden = 1 if n_params < 8 else 2
        inputs = max(1, (n_params - 1) // hidden - 2)
    return gc.Model.from_dict(mlp_spec(hidden, inputs, samples))


def n_params(model: gc.Model) -> int:
    return sum(p.value.size for p in model.params.values())
