"""torch's slow two-way gradcheck of a model file written by ``benchmarks/models.py``'s ``mlp_spec``.

    python benchmarks/torch_mlp.py wide.yaml

A whole process, as a torch user would write it: read the same YAML file
(PyYAML's safe loader), build the same tanh MLP in float64 with the file's
params and data, and run ``torch.autograd.gradcheck`` in slow mode (every
element by central differences against autograd) on one flat parameter
vector. One torch thread, its fastest setting on the benchmark machine. Exit
0 when torch says the gradients agree. Not a test: ``benchmarks/run.py``
times it against ``python -m gradcheck`` on the same file.
"""

from __future__ import annotations

import sys

import torch
import yaml


def main(path: str) -> int:
    torch.set_num_threads(1)
    with open(path) as f:
        spec = yaml.safe_load(f)
    p, d = spec["params"], spec["data"]
    W1 = torch.tensor(p["W1"], dtype=torch.float64)
    b1 = torch.tensor(p["b1"], dtype=torch.float64)
    w2 = torch.tensor(p["w2"], dtype=torch.float64)
    b2 = torch.tensor([p["b2"]], dtype=torch.float64)
    x = torch.tensor(d["x"], dtype=torch.float64)  # (samples, inputs)
    y = torch.tensor(d["y"], dtype=torch.float64)
    parts = [W1, b1, w2, b2]
    sizes = [t.numel() for t in parts]
    shapes = [t.shape for t in parts]

    def loss(theta: torch.Tensor) -> torch.Tensor:
        W1_, b1_, w2_, b2_ = (t.reshape(s) for t, s in zip(torch.split(theta, sizes), shapes))
        h = torch.tanh(x @ W1_.T + b1_)
        y_pred = h @ w2_ + b2_
        return ((y_pred - y) ** 2).mean()

    theta = torch.cat([t.reshape(-1) for t in parts]).requires_grad_(True)
    ok = torch.autograd.gradcheck(loss, (theta,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=False)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
