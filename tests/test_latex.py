"""gradcheck.latex: model-language expressions in matrix notation, and every formula renders with mathtext."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

import gradcheck as gc
from gradcheck.expr import Node
from gradcheck.latex import derivative_latex, expression_latex, name_latex, to_latex
from gradcheck.ops import OPS

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted([*REPO.glob("examples/*.yaml"), *REPO.glob("examples/*/*.yaml")])


def render(latex: str) -> None:
    """Fails (with mathtext's message) unless matplotlib's mathtext reads ``latex``."""
    from matplotlib import mathtext

    mathtext.math_to_image(f"${latex}$", io.BytesIO(), format="png")


SHAPES = {
    "W1": (3, 2),
    "x": (2,),
    "y": (),
    "y_pred": (),
    "w2": (3,),
    "h": (3,),
    "b": (3,),
    "w": (),
    "z": (3,),
    "c": (3, 1),
}


@pytest.mark.parametrize(
    ("text", "latex"),
    [
        # the MLP's first-layer weight, as a course writes it: (2 (ŷ - y) w2 ⊙ (1 - h²)) xᵀ
        (
            "outer(2*(y_pred - y)*w2*(1 - h**2), x)",
            r"\left(2 \, \left(y_{\mathrm{pred}} - y\right) \, \mathbf{w}_{2} \odot \left(1 - \mathbf{h}^{2}\right)"
            r"\right) \, \mathbf{x}^{\top}",
        ),
        ("2*x*(w*x - y)", r"2 \, \mathbf{x} \odot \left(w \, \mathbf{x} - y\right)"),
        ("W1 @ x + b", r"\mathbf{W}_{1} \, \mathbf{x} + \mathbf{b}"),
        ("(W1 @ x) * h", r"\mathbf{W}_{1} \, \mathbf{x} \odot \mathbf{h}"),
        ("W1.T @ h", r"\mathbf{W}_{1}^{\top} \, \mathbf{h}"),
        ("h @ W1", r"\mathbf{h}^{\top} \, \mathbf{W}_{1}"),
        ("sum(h)", r"\mathbf{1}^{\top} \, \mathbf{h}"),
        ("sum(W1, axis=0)", r"\sum_{\mathrm{axis}\,0} \mathbf{W}_{1}"),
        ("(z > 0) * w2", r"\left[\mathbf{z} > 0\right] \odot \mathbf{w}_{2}"),
        (
            "sigmoid(z)*(1 - sigmoid(z))",
            r"\sigma\left(\mathbf{z}\right) \odot \left(1 - \sigma\left(\mathbf{z}\right)\right)",
        ),
        ("relu(z)/2", r"\frac{\operatorname{relu}\left(\mathbf{z}\right)}{2}"),
        ("w - (w - y)", r"w - \left(w - y\right)"),
        ("(w - y) - w", r"w - y - w"),
        ("w * -y", r"w \, \left(-y\right)"),
        ("-(w + y)", r"-\left(w + y\right)"),
        ("2*3", r"2 \cdot 3"),
        ("1e-3*w", r"10^{-3} \, w"),
        ("dot(h, z)", r"\mathbf{h}^{\top} \, \mathbf{z}"),
        ("norm(h)", r"\left\|\mathbf{h}\right\|"),
        ("abs(w)**2", r"\left|w\right|^{2}"),
        ("W1[0, :]", r"\mathbf{W}_{1}[0, :]"),
        # a broadcast is a product with ones
        ("expand(w, [3])", r"w \, \mathbf{1}"),
        ("expand(h, [2, 3])", r"\mathbf{1} \, \mathbf{h}^{\top}"),
        ("expand(c, [3, 2])", r"\mathbf{c} \, \mathbf{1}^{\top}"),
        ("expand(h, [4, 2, 3])", r"\operatorname{expand}\left(\mathbf{h}, \mathrm{shape}=[4, 2, 3]\right)"),
        ("sqrt(2 / pi) * e", r"\sqrt{\frac{2}{\pi}} \, e"),
        ("leaky_relu(z, slope=0.1)", r"\operatorname{leaky\_relu}\left(\mathbf{z}, \mathrm{slope}=0.1\right)"),
    ],
)
def test_expression_latex(text: str, latex: str) -> None:
    assert expression_latex(text, SHAPES) == latex
    render(latex)


@pytest.mark.parametrize(
    ("name", "tensor", "latex"),
    [
        ("W1", True, r"\mathbf{W}_{1}"),
        ("w", False, "w"),
        ("y_pred", False, r"y_{\mathrm{pred}}"),
        ("h_1", True, r"\mathbf{h}_{1}"),
        ("p0_weight", True, r"\mathbf{p}_{0,\mathrm{weight}}"),
        ("alpha", False, r"\alpha"),
        ("loss", False, r"\mathrm{loss}"),
        ("_b", False, r"\mathrm{\_b}"),
        ("b_", True, r"\mathbf{b}"),
    ],
)
def test_name_latex(name: str, tensor: bool, latex: str) -> None:
    assert name_latex(name, tensor) == latex
    render(latex)


def test_derivative_latex_names_the_loss_ell() -> None:
    text = derivative_latex("loss", "W1", (3, 2), "a")
    assert text == r"\frac{\partial \ell}{\partial \mathbf{W}_{1}} = a"
    render(text)
    assert derivative_latex("nll", "w", (), "a").startswith(r"\frac{\partial \mathrm{nll}}{\partial w}")


def _sample(op_name: str) -> Node:
    """A node of op ``op_name`` over vector names, with the op's attributes that have a default."""
    op = OPS[op_name]
    args = tuple(Node("name", value=n, shape=(3,)) for n in ("u", "v", "s", "t")[: op.arity])
    attrs = tuple((a.name, a.default) for a in op.attrs if a.default is not None)
    if op.notation == "index":
        attrs = (("index", (0, (1, None, None))),)
    return Node(op.name, args, attrs=attrs, shape=(3,))


@pytest.mark.parametrize("op_name", sorted(OPS))
def test_every_op_renders(op_name: str) -> None:
    render(to_latex(_sample(op_name)))


def _expressions(path: Path) -> list[tuple[str, str]]:
    spec = yaml.safe_load(path.read_text())
    texts = list((spec.get("model") or {}).items()) + list((spec.get("expected") or {}).items())
    return [(k, v) for k, v in texts if isinstance(v, str)]


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(REPO / "examples")) for p in EXAMPLES])
def test_every_example_expression_renders(path: Path) -> None:
    model = gc.load(str(path))
    shapes = {k: model.shape_of(k) for k in [*model.params, *model.data, *model.entries]}
    found = _expressions(path)
    assert found
    for _name, text in found:
        render(expression_latex(text, shapes))
