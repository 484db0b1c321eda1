"""Command-line options generated from a dataclass, CleanRL style: each field is an option, its docstring
the ``--help`` text, so one definition holds name, type, default and documentation.

Field types: ``bool`` is a flag (``--x/--no-x`` when it defaults to True); ``Literal[...]`` gives choices,
matched in any case; ``list[T]`` an option that may be given many times; ``tuple[T, ...]`` a
comma-separated list; ``tuple[T, U]`` that many values; ``T | None`` an option that may be absent.
Field metadata comes from :func:`option` (option name, metavar, parser of the text, required) or is
:data:`NO_CLI` (not on the command line). Choices known only at run time, like the registered env names,
are passed to :func:`add_options` / :func:`build_parser`.

A bad value is an exit with code 2 naming the option: argparse's own checks, and a :class:`FieldError`
raised while the dataclass is built. :func:`main` adds one-line errors and ``--debug`` (:class:`Options`).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import os
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from bench.settings import ConfigError

T = TypeVar("T")

NO_CLI = {"cli": False}
"""Field metadata of a field that is not a command-line option."""


def option(
    flag: str | None = None,
    metavar: str | tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    required: bool = False,
) -> dict[str, Any]:
    """Field metadata: option name (default ``--field-name``), metavar, a parser of the option's text (for
    values that are not plain numbers or words), and whether the option must be given."""
    return {"flag": flag, "metavar": metavar, "parse": parse, "required": required}


class FieldError(ValueError):
    """A bad value for one field; the command line reports it under the field's option name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} {message}")
        self.name = name
        self.message = message


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of the dataclass ``cls`` (base classes included), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (frozen interpreter): options without help text
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
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


def option_name(f: dataclasses.Field) -> str:
    """The command-line option of field ``f``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _cli_fields(obj: Any) -> list[dataclasses.Field]:
    """The command-line fields, the common ones (keyword-only, from :class:`Options`) last."""
    shown = [f for f in dataclasses.fields(obj) if f.metadata.get("cli", True)]
    return sorted(shown, key=lambda f: f.kw_only)


def _unwrap(tp: Any) -> Any:
    """``X`` for ``X | None``."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


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


def _argument(tp: Any, f: dataclasses.Field, default: Any) -> dict[str, Any]:
    """``add_argument`` keywords (besides dest, default and help) for field ``f`` of type ``tp``."""
    tp = _unwrap(tp)
    if f.metadata.get("parse"):
        return {"type": f.metadata["parse"]}
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction if default else "store_true"}
    if choices := _choices(tp):
        return {"type": _choice(choices), "choices": choices}  # usage shows the choices
    if typing.get_origin(tp) is list:
        return {"action": "append", "type": typing.get_args(tp)[0]}
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": _comma_list(args[0])}
        return {"type": args[0], "nargs": len(args)}
    return {"type": tp}


def _help(doc: str, default: Any, required: bool) -> str:
    """The help text: the field's docstring and its default, when there is one worth showing."""
    if not (required or default is None or default is False or default in ("", [])):
        doc += f" (default: {','.join(map(str, default)) if isinstance(default, tuple) else default})"
    return doc.replace("%", "%%")  # argparse formats help texts with %


def add_options(parser: Any, defaults: Any, choices: dict[str, Sequence[str]] | None = None) -> None:
    """One option per command-line field of the dataclass instance ``defaults``, its values as defaults.

    ``parser`` is an ``argparse.ArgumentParser`` or one of its argument groups; ``choices`` restricts
    fields by name (for choices known only at run time).
    """
    hints = typing.get_type_hints(type(defaults))
    docs = field_docs(type(defaults))
    for f in _cli_fields(defaults):
        default = getattr(defaults, f.name)
        kwargs = _argument(hints[f.name], f, default)
        if choices and f.name in choices:
            kwargs["choices"] = list(choices[f.name])
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        elif "choices" not in kwargs and kwargs.get("action") in (None, "append"):  # flags take no value
            kwargs["metavar"] = option_name(f).lstrip("-").upper().replace("-", "_")
        required = f.metadata.get("required", False)
        text = _help(docs.get(f.name, ""), default, required)
        parser.add_argument(
            option_name(f), dest=f.name, default=default, help=text, required=required, **kwargs
        )


def build_parser(
    cls: type, choices: dict[str, Sequence[str]] | None = None, **parser_args: Any
) -> argparse.ArgumentParser:
    """An ArgumentParser with one option per field of the dataclass ``cls`` (defaults: ``cls()``)."""
    parser = argparse.ArgumentParser(formatter_class=argparse.RawDescriptionHelpFormatter, **parser_args)
    add_options(parser, cls(), choices)
    return parser


def from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, defaults: T) -> T:
    """``defaults`` with the parsed command-line fields; a FieldError exits with code 2 naming the option."""
    hints = typing.get_type_hints(type(defaults))
    values = {f.name: getattr(args, f.name) for f in _cli_fields(defaults)}
    for name, value in values.items():  # nargs gives a list where the field holds a tuple
        if isinstance(value, list) and typing.get_origin(_unwrap(hints[name])) is tuple:
            values[name] = tuple(value)
    try:
        return dataclasses.replace(defaults, **values)
    except FieldError as error:
        flags = {f.name: option_name(f) for f in dataclasses.fields(defaults)}
        parser.error(f"{flags.get(error.name, error.name)} {error.message}")


def parse(cls: type[T], parser: argparse.ArgumentParser, argv: Sequence[str]) -> T:
    """The options dataclass for ``argv`` (argparse exits 2 with the valid choices on bad input)."""
    return from_args(parser, parser.parse_args(list(argv)), cls())


def given(options: Any, names: Sequence[str]) -> list[str]:
    """The options among ``names`` that were set (not None, False or empty)."""
    return [name for name in names if getattr(options, name) not in (None, False, [])]


def check_choices(obj: Any) -> None:
    """Raise FieldError for a Literal-typed field (or tuple of them) holding a value outside its choices."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        tp, value = hints[f.name], getattr(obj, f.name)
        if typing.get_origin(tp) is tuple and _choices(typing.get_args(tp)[0]):
            choices, values = _choices(typing.get_args(tp)[0]), tuple(value)
            if not values:
                raise FieldError(f.name, f"needs at least one of {', '.join(choices)}")
        else:
            choices, values = _choices(tp), (value,)
        if choices and any(v not in choices for v in values):
            raise FieldError(f.name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")


@dataclasses.dataclass(kw_only=True)
class Options:
    """Options every command has (subclass it; its fields come after the subclass's)."""

    debug: bool = False
    """Show tracebacks instead of one-line errors (also WARPBENCH_DEBUG=1)."""


def debug_requested(flag: bool = False) -> bool:
    """Tracebacks instead of one-line errors: ``--debug`` or ``WARPBENCH_DEBUG=1``."""
    return flag or os.environ.get("WARPBENCH_DEBUG", "") not in ("", "0")


def report_failure(prog: str, error: Exception) -> int:
    """Print ``error`` as one line naming its type; return the failed-run exit code."""
    from bench.lifecycle import EXIT_FAILED  # here, not above: bench.report uses this module without torch

    print(f"{prog}: error: {type(error).__name__}: {error} (--debug shows the traceback)", file=sys.stderr)
    return EXIT_FAILED


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
    debug = debug_requested(getattr(options, "debug", False))
    recorded = ["python", "-m", parser.prog.removeprefix("python -m "), *argv]
    try:
        return body(options, recorded)
    except Exception as error:
        if debug:
            raise
        if isinstance(error, ConfigError):
            parser.error(str(error))
        return report_failure(parser.prog, error)
