"""micrograd (https://github.com/karpathy/micrograd) as a gradcheck engine: docs/engines.md.

``engine()`` is what ``--against examples.engines.micrograd_engine:engine``
calls (a callable without parameters is a factory). ``broken_engine()`` is
the same engine with a deliberately broken copy of micrograd's ``*``.
"""

import math
import operator

from micrograd.engine import Value

import gradcheck as gc


def tanh(x):
    """micrograd 0.1.0 has relu only: tanh in micrograd's own three-line shape."""
    t = math.tanh(x.data)
    out = Value(t, (x,), "tanh")

    def _backward():
        x.grad += (1 - t**2) * out.grad

    out._backward = _backward
    return out


def mul_with_a_slip(a, b):
    """A copy of micrograd's ``Value.__mul__`` with one slip in its backward rule."""
    a = a if isinstance(a, Value) else Value(a)
    b = b if isinstance(b, Value) else Value(b)
    out = Value(a.data * b.data, (a, b), "*")

    def _backward():
        a.grad += b.data * out.grad
        b.grad += b.data * out.grad  # the slip: should be a.data

    out._backward = _backward
    return out


def grad(loss, leaves):
    loss.backward()
    return [leaf.grad for leaf in leaves]


OPS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
    "neg": operator.neg,
    "relu": Value.relu,
    "tanh": tanh,
}


def engine():
    return gc.Engine("micrograd", leaf=Value, ops=OPS, grad=grad)


def broken_engine():
    return gc.Engine("broken", leaf=Value, ops={**OPS, "*": mul_with_a_slip}, grad=grad)
