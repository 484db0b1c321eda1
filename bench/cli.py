"""Command-line options generated from a dataclass, CleanRL style: each field is an option, its docstring
the ``--help`` text, so one definition holds name, type, default and documentation.

Field metadata (``dataclasses.field(metadata=...)``): ``flag`` (the option name, default ``--field-name``),
``metavar``, ``required``. A list field is an option that may be given many times. Choices are passed to
:func:`build_parser` (some, like the registered env names, are known only at run time).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import os
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bench.lifecycle import EXIT_FAILED
from bench.settings import ConfigError

T = TypeVar("T")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of the dataclass ``cls`` (base classes included)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, following in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _base_type(annotation: Any) -> Any:
    """``int`` for ``int | None`` and the like; ``list`` for list types."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (list, Sequence):
        return list
    return args[0] if args and typing.get_origin(annotation) is not list else annotation


def build_parser(
    cls: type, choices: dict[str, Sequence[str]] | None = None, **parser_args: Any
) -> argparse.ArgumentParser:
    """An ArgumentParser with one option per field of the dataclass ``cls``."""
    parser = argparse.ArgumentParser(formatter_class=argparse.RawDescriptionHelpFormatter, **parser_args)
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in sorted(dataclasses.fields(cls), key=lambda f: f.kw_only):  # common options last
        meta = field.metadata
        flag = meta.get("flag", "--" + field.name.replace("_", "-"))
        kind = _base_type(hints[field.name])
        kwargs: dict[str, Any] = {"dest": field.name, "help": docs.get(field.name, "")}
        if kind is bool:
            kwargs["action"] = "store_true"
        elif kind is list:
            kwargs.update(action="append", default=[])
        else:
            kwargs["type"] = kind
        if field.default is not dataclasses.MISSING and kind not in (bool, list):
            kwargs["default"] = field.default
            if field.default not in (None, "") and not meta.get("required"):
                kwargs["help"] += f" (default: {field.default})"
        if meta.get("required"):
            kwargs["required"] = True
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if choices and field.name in choices:
            kwargs["choices"] = list(choices[field.name])
        parser.add_argument(flag, **kwargs)
    return parser


def parse(cls: type[T], parser: argparse.ArgumentParser, argv: Sequence[str]) -> T:
    """The options dataclass for ``argv`` (argparse exits 2 with the valid choices on bad input)."""
    namespace = parser.parse_args(list(argv))
    return cls(**{field.name: getattr(namespace, field.name) for field in dataclasses.fields(cls)})


def given(options: Any, names: Sequence[str]) -> list[str]:
    """The options among ``names`` that were set (not None, False or empty)."""
    return [name for name in names if getattr(options, name) not in (None, False, [])]


@dataclasses.dataclass(kw_only=True)
class Options:
    """Options every command has (subclass it; its fields come after the subclass's)."""

    debug: bool = False
    """Show tracebacks instead of one-line errors (also WARPBENCH_DEBUG=1)."""


def main(
    options_cls: type[T],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    body: Callable[[T, list[str]], int],
) -> int:
    """Parse ``argv`` (None: ``sys.argv[1:]``) into ``options_cls``; run ``body(options, recorded argv)``.

    A ConfigError is a usage error (one line, exit 2) and any other error one line naming it (exit 1);
    ``--debug`` or ``WARPBENCH_DEBUG=1`` keep the traceback instead.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parse(options_cls, parser, argv)
    debug = getattr(options, "debug", False) or os.environ.get("WARPBENCH_DEBUG", "") not in ("", "0")
    recorded = ["python", "-m", parser.prog.removeprefix("python -m "), *argv]
    try:
        return body(options, recorded)
    except Exception as error:
        if debug:
            raise
        if isinstance(error, ConfigError):
            parser.error(str(error))
        name = type(error).__name__
        print(f"{parser.prog}: error: {name}: {error} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_FAILED
