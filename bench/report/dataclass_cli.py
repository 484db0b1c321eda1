"""Command-line options generated from a dataclass: one option per field, the field's docstring as its help.

In the style of CleanRL's ``Args``: the dataclass is the one home of every default and explanation, and the
parser is derived from it. Field metadata (:func:`cli`) renames an option, gives a metavar or a parser for
values that are not plain numbers or words, or keeps a field off the command line (:data:`NO_CLI`).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Callable
from dataclasses import Field, fields, replace
from typing import Any, Literal

NO_CLI = {"cli": False}


def cli(
    flag: str | None = None, metavar: str | tuple[str, ...] | None = None, parse: Callable | None = None
) -> dict[str, Any]:
    """Field metadata: option name (default ``--field-name``), metavar, and a parser of the option's text."""
    return {"flag": flag, "metavar": metavar, "parse": parse}


class FieldError(ValueError):
    """A bad value for one field; the command line reports it under the field's option name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} {message}")
        self.name = name
        self.message = message


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (read from its source), by field name."""
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    except (OSError, TypeError):  # no source (frozen interpreter): options without help text
        return {}
    docs = {}
    for node, doc in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[node.target.id] = " ".join(doc.value.value.split())
    return docs


def option_name(f: Field) -> str:
    """The command-line option of field ``f``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _cli_fields(obj: Any) -> list[Field]:
    return [f for f in fields(obj) if f.metadata.get("cli", True)]


def _choices(tp: Any) -> tuple | None:
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


def _choice(choices: tuple) -> Callable[[str], str]:
    """Case-insensitive match of a word to one of ``choices`` (left as given when none matches)."""

    def parse(text: str) -> str:
        return next((c for c in choices if str(c).lower() == text.lower()), text)

    return parse


def _comma_list(element: Any) -> Callable[[str], tuple]:
    choices = _choices(element)

    def parse(text: str) -> tuple:
        words = [w.strip() for w in text.split(",") if w.strip()]
        items = tuple(_choice(choices)(w) if choices else element(w) for w in words)
        if not items or (choices and any(i not in choices for i in items)):
            what = (
                f"a comma-separated subset of {', '.join(choices)}" if choices else "comma-separated values"
            )
            raise argparse.ArgumentTypeError(f"takes {what}, got {text!r}")
        return items

    return parse


def _argument(tp: Any, f: Field, default: Any) -> dict[str, Any]:
    """``add_argument`` keywords for a field of type ``tp``."""
    meta = {"metavar": f.metadata.get("metavar") or option_name(f).lstrip("-").upper().replace("-", "_")}
    if f.metadata.get("parse"):
        return {"type": f.metadata["parse"], **meta}
    if typing.get_origin(tp) in (types.UnionType, typing.Union):  # X | None: an option that may be absent
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction if default else "store_true"}
    if choices := _choices(tp):
        return {"type": _choice(choices), "choices": choices}  # usage shows the choices
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": _comma_list(args[0]), **meta}
        return {"type": args[0], "nargs": len(args), **meta}
    return {"type": tp, **meta}


def _shown(default: Any) -> str:
    if isinstance(default, tuple):
        return ",".join(str(d) for d in default)
    return str(default)


def add_options(parser: Any, defaults: Any) -> None:
    """One option per command-line field of the dataclass instance ``defaults``, its values as defaults.

    ``parser`` is an ``argparse.ArgumentParser`` or one of its argument groups.
    """
    hints = typing.get_type_hints(type(defaults))
    docs = field_docs(type(defaults))
    for f in _cli_fields(defaults):
        default = getattr(defaults, f.name)
        text = docs.get(f.name, "").replace("%", "%%")
        if default is not None and default is not False:
            text += f" (default: {_shown(default)})"
        kwargs = _argument(hints[f.name], f, default)
        parser.add_argument(option_name(f), dest=f.name, default=default, help=text, **kwargs)


def from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, defaults: Any) -> Any:
    """``defaults`` with the parsed command-line fields; a FieldError exits with code 2 naming the option."""
    values = {f.name: getattr(args, f.name) for f in _cli_fields(defaults)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # nargs gives lists
    try:
        return replace(defaults, **values)
    except FieldError as exc:
        flags = {f.name: option_name(f) for f in fields(defaults)}
        parser.error(f"{flags.get(exc.name, exc.name)} {exc.message}")


def check_choices(obj: Any) -> None:
    """Raise FieldError for a Literal-typed field (or tuple of them) holding a value outside its choices."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        tp, value = hints[f.name], getattr(obj, f.name)
        if typing.get_origin(tp) is tuple and _choices(typing.get_args(tp)[0]):
            choices, values = _choices(typing.get_args(tp)[0]), tuple(value)
            if not values:
                raise FieldError(f.name, f"needs at least one of {', '.join(choices)}")
        else:
            choices, values = _choices(tp), (value,)
        if choices and any(v not in choices for v in values):
            raise FieldError(f.name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
