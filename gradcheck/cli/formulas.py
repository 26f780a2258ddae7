"""``gradcheck formulas MODEL.yaml [--latex] [--expected]``: print each param's derivative formula.

Per param, the derivative of the per-sample loss as one expression of the
model language in the param's own shape (``Model.gradient_expression``):
``W1: outer(...)``. ``--expected`` prints the same as an ``expected:`` block
(YAML, quoted where a formula would not read back as itself) to paste into
the model file, where it then agrees three ways; ``--latex`` prints
``\\frac{\\partial \\ell}{\\partial \\mathbf{W}_{1}} = ...`` lines
(:mod:`gradcheck.latex`). Exit status 0, or 2 when the input is unusable.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ModelError
from .common import EXIT_OK

NAME = "formulas"
SUMMARY = "print each param's derivative formula (model language, --expected block, --latex)"


def add_to(subparsers: Any, commands: str) -> argparse.ArgumentParser:
    """Register ``formulas`` on the root parser's ``subparsers``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        NAME,
        prog="gradcheck formulas",
        help=SUMMARY,
        description=(
            "Print, per param, the derivative of the per-sample loss as one expression of the\n"
            "model language in the param's own shape, naming the model's entries\n"
            "(W1: outer(2*(y_pred - y)*w2*(1 - h**2), x)); never element by element."
        ),
        epilog=(
            "examples:\n"
            "  gradcheck formulas examples/mlp.yaml\n"
            "  gradcheck formulas examples/mlp.yaml --expected >> my_model.yaml   # then: gradcheck my_model.yaml\n"
            "  gradcheck formulas examples/mlp.yaml --latex\n"
            "exit status: 0 printed; 2 unusable input (bad file, YAML, expression, name, shape, flag).\n"
            "Docs: docs/cli.md, docs/model-file.md (expected)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", metavar="MODEL.yaml", help="the model file")
    p.add_argument(
        "--torch",
        metavar="MODULE:FACTORY",
        help="instead of a file: PyTorch code, FACTORY() -> (fn, params, data), traced as gc.from_torch",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--expected",
        action="store_true",
        help="print an `expected:` block (YAML) to paste into the model file, where it agrees three ways",
    )
    how.add_argument("--latex", action="store_true", help="print LaTeX in matrix notation, one equation per param")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    p.set_defaults(run=run, usage_error=p.error)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the formulas; bad input raises :class:`ModelError`."""
    if (args.model is None) == (args.torch is None):
        args.usage_error("give one MODEL.yaml or --torch MODULE:FACTORY")
    if args.torch is not None:
        from ..trace import from_factory

        model = from_factory(args.torch, "--torch")
    else:
        from ..model import load

        model = load(args.model)
    formulas = {name: model.gradient_expression(name) for name in model.params}
    if args.expected:
        print(expected_block(formulas), end="")
    elif args.latex:
        from ..latex import formula_latex

        for name, text in formulas.items():
            print(formula_latex(model, name, text))
    else:
        for name, text in formulas.items():
            print(f"{name}: {text}")
    return EXIT_OK


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when it reads back as itself, else double-quoted (JSON is YAML)."""
    import yaml

    try:
        plain = yaml.safe_load(f"k: {text}\n") == {"k": text} and "#" not in text
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text)


def expected_block(formulas: dict[str, str]) -> str:
    """The ``expected:`` block of ``formulas`` ({param: text}), valid YAML that reads back to the same texts."""
    if not formulas:
        raise ModelError("the model has no params, so there is nothing to differentiate", fix="add a `params:` entry")
    lines = ["expected:"] + [f"  {_scalar(name)}: {_scalar(text)}" for name, text in formulas.items()]
    return "\n".join(lines) + "\n"
