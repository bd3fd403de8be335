"""Load rules.yaml into a ``RulesFile``, reporting every problem as ``file:line: field: what``.

This is the edge where untrusted text becomes a value, so it must never fail with anything but
``ConfigError``, whatever the bytes: a missing file, junk, a YAML bomb or a 10,000-deep list all
become one clear line per problem. The YAML dialect is PyYAML's safe subset, tightened:

- no aliases (``*name``): they have no use in rules.yaml and are how "billion laughs" bombs work;
- no explicit tags except the plain ``!!str``/``!!int``/``!!float``/``!!bool``/``!!null``/
  ``!!seq``/``!!map`` (so ``!!python/object`` is reported, never constructed);
- at most one document, 1 MiB and 20 levels of nesting;
- duplicate keys are errors (PyYAML would silently keep the last one);
- YAML 1.2 numbers: ``11:25`` is the text "11:25" (YAML 1.1 reads it as 685, in base 60) and
  ``0001234`` is the text "0001234" (YAML 1.1 reads it as the octal number 668).
"""

from __future__ import annotations

import difflib
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    NodeEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from guard.config.schema import RulesFile
from guard.errors import ConfigError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "load_rules", "load_rules_text"]

MAX_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 20
_MAX_PROBLEMS: Final = 50

_Y = "tag:yaml.org,2002:"
_ALLOWED_TAGS: Final = frozenset(
    {None, "!"} | {_Y + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
)

Loc = tuple[str | int, ...]


class _RulesLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 integers and floats (no base 60, no leading-zero octal)."""

    yaml_implicit_resolvers = {  # noqa: RUF012  (PyYAML's own class-level registry)
        first: [(tag, rx) for tag, rx in resolvers if tag not in {_Y + "int", _Y + "float"}]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_RulesLoader.add_implicit_resolver(
    _Y + "int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_RulesLoader.add_implicit_resolver(
    _Y + "float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass
class _Document:
    """Plain Python data plus, for each field path, its line and (for non-text) its source."""

    source: str
    lines: dict[Loc, int] = field(default_factory=dict)
    raw: dict[Loc, str] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)
    reported: set[Loc] = field(default_factory=set)

    def problem(self, line: int, path: Loc, message: str) -> None:
        self.reported.add(path)
        where = f"{_dotted(path)}: " if path else ""
        self.problems.append((line, f"{self.source}:{line}: {where}{message}"))


def load_rules(path: str | Path) -> RulesFile:
    """Read and validate a rules file. Raises only ``ConfigError``."""
    source = _clean_source(str(path))
    try:
        target = Path(path)
        info = target.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{source}: is a directory, not a rules file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{source}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise ConfigError(f"{source}: {info.st_size} bytes is too large (at most 1 MiB)")
        with target.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except (OSError, ValueError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot read: {reason}") from None
    return load_rules_text(data, source)


def load_rules_text(text: str | bytes, source: str) -> RulesFile:
    """Validate rules.yaml content; ``source`` names it in messages. Raises only ``ConfigError``."""
    source = _clean_source(source)
    try:
        return _load(text, source)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except Exception as exc:  # the edge's promise: never a traceback, whatever the input
        raise ConfigError(f"{source}: cannot be read as rules ({type(exc).__name__})") from None


def _load(text: str | bytes, source: str) -> RulesFile:
    decoded = _decode(text, source)
    doc = _Document(source)
    if not _prescan(decoded, doc):
        _raise(doc)
    root = _compose(decoded, doc)
    if root is None:
        _raise(doc)
        raise ConfigError(f"{source}: the file is empty (see docs/rules-reference.md)")
    loader = _RulesLoader("")
    doc.lines[()] = root.start_mark.line + 1
    data = _build(root, (), doc, loader)
    if not isinstance(data, dict):
        _raise(doc)
        raise ConfigError(
            f"{source}:{doc.lines[()]}: the top level must be a mapping "
            "(version: 1, accounts: [...], rules: [...])"
        )
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as exc:
        for error in _relevant(exc.errors()):
            if _path(error["loc"]) in doc.reported:
                continue  # the YAML-level problem at this path says it better
            line, message = _describe(error, doc)
            doc.problems.append((line, message))
        _raise(doc)
        raise  # unreachable: a ValidationError always has at least one error
    _raise(doc)
    return rules


def _decode(text: str | bytes, source: str) -> str:
    if isinstance(text, str):
        if len(text) > MAX_BYTES:
            raise ConfigError(f"{source}: too large (at most 1 MiB)")
        return text
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: too large (at most 1 MiB)")
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = text[: exc.start].count(b"\n") + 1
        byte = text[exc.start]
        raise ConfigError(f"{source}:{line}: not UTF-8 text (byte 0x{byte:02x})") from None


def _prescan(text: str, doc: _Document) -> bool:
    """Walk the event stream (iteratively) to refuse aliases, odd tags and deep nesting before
    PyYAML's recursive composer ever sees them. False when the text cannot be composed safely."""
    depth = 0
    documents = 0
    try:
        loader = _RulesLoader(text)
        while loader.check_event():
            event: Event = loader.get_event()  # type: ignore[no-untyped-call]
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    doc.problem(line, (), "only one YAML document is allowed (remove '---')")
                    return False
            if isinstance(event, AliasEvent):
                anchor = _short(event.anchor, quote=False)
                doc.problem(line, (), f"YAML aliases (*{anchor}) are not allowed")
                return False
            if isinstance(event, NodeEvent) and not isinstance(event, AliasEvent):
                tag = getattr(event, "tag", None)
                if tag not in _ALLOWED_TAGS:
                    shown = _short(str(tag).replace(_Y, "!!"), 60, quote=False)
                    doc.problem(line, (), f"YAML tag {shown} is not allowed in rules")
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    doc.problem(line, (), f"nested too deeply (at most {MAX_DEPTH} levels)")
                    return False
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                depth -= 1
            if len(doc.problems) >= _MAX_PROBLEMS:
                return False
    except yaml.MarkedYAMLError as exc:
        _yaml_problem(exc, doc)
        return False
    except yaml.YAMLError as exc:
        _yaml_problem(exc, doc, text)
        return False
    return not doc.problems


def _compose(text: str, doc: _Document) -> Node | None:
    try:
        loader = _RulesLoader(text)
        node: Node | None = loader.get_single_node()
    except yaml.YAMLError as exc:
        _yaml_problem(exc, doc, text)
        return None
    return node


def _yaml_problem(exc: yaml.YAMLError, doc: _Document, text: str = "") -> None:
    """One line from a PyYAML error, which is otherwise several lines with a code snippet."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        words = [w for w in (exc.context, exc.problem) if w]
        doc.problem(line, (), "YAML syntax: " + "; ".join(words))
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        doc.problem(line, (), f"character #x{exc.character:04x} is not allowed in YAML text")
    else:
        doc.problem(1, (), "YAML error: " + str(exc).splitlines()[0])


def _build(node: Node, path: Loc, doc: _Document, loader: _RulesLoader) -> Any:
    """Node tree -> plain data, recording lines; depth is bounded by the prescan."""
    line = node.start_mark.line + 1
    if isinstance(node, ScalarNode):
        try:
            value = loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError, LookupError):
            # (``!!bool https://...`` is a KeyError inside PyYAML)
            shown = "the value" if _secret_path(path) else _short(node.value)
            doc.problem(line, path, f"{shown} is not a valid {_tag_word(node.tag)}")
            return node.value
        if not isinstance(value, str):
            doc.raw[path] = node.value
        return value
    if isinstance(node, SequenceNode):
        items = []
        for i, child in enumerate(node.value):
            doc.lines[(*path, i)] = child.start_mark.line + 1
            items.append(_build(child, (*path, i), doc, loader))
        return items
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = _key(key_node, key_line, path, doc, loader)
            if key is None:
                continue
            if key in result:
                first = doc.lines.get((*path, key), key_line)
                shown = "(not shown)" if _secret_path((*path, key)) and _URLISH.search(key) \
                    else _short(key)
                message = f"duplicate key {shown} (first at line {first})"
                doc.problem(key_line, (*path, key), message)
                continue
            doc.lines[(*path, key)] = key_line
            result[key] = _build(value_node, (*path, key), doc, loader)
        return result
    doc.problem(line, path, "unsupported YAML node")
    return None


def _key(node: Node, line: int, path: Loc, doc: _Document, loader: _RulesLoader) -> str | None:
    if not isinstance(node, ScalarNode):
        doc.problem(line, path, "a key must be a plain word, not a list or mapping")
        return None
    try:
        key = loader.construct_object(node)
    except (yaml.YAMLError, ValueError, OverflowError, TypeError):
        key = None
    if not isinstance(key, str):
        doc.problem(line, path, f"key {_short(node.value)} is not text to YAML; quote it")
        return None
    return key


def _tag_word(tag: str) -> str:
    words = {"timestamp": "date", "int": "number", "float": "number", "bool": "boolean"}
    name = tag.removeprefix(_Y)
    return words.get(name, name) if tag.startswith(_Y) else "value"


def _short(value: object, limit: int = 40, *, quote: bool = True) -> str:
    """A value for a message: on one line, quoted if asked, and never a wall of text."""
    text = repr(value) if quote and isinstance(value, str) else repr(str(value))[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean_source(source: str) -> str:
    """A file name on one line, whatever characters the path had."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in source)


_TYPE_WORDS: Final = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
}
_YAML_TYPE_WORDS: Final = {
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "date": "a date",
    "datetime": "a date and time",
    "bytes": "binary data",
}


def _raise(doc: _Document) -> None:
    if doc.problems:
        ordered = sorted(doc.problems, key=lambda p: p[0])[:_MAX_PROBLEMS]
        raise ConfigError([message for _, message in ordered])


def _dotted(loc: Sequence[str | int]) -> str:
    text = ""
    secret = _secret_path(tuple(loc))
    for part in loc:
        name = _short(part, quote=False)
        if secret and isinstance(part, str) and _URLISH.search(part):
            name = "(key not shown)"  # a webhook pasted as a key, token and all
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text if len(text) <= 120 else "..." + text[-117:]


def _path(loc: Sequence[Any]) -> Loc:
    """Pydantic's loc without its markers (``[key]``, validator names): the YAML field path."""
    return tuple(p for p in loc if isinstance(p, int) or (isinstance(p, str) and p != "[key]"))


def _relevant(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "list too short" when an item of that list failed: the item's error is the news."""
    paths = [_path(e["loc"]) for e in errors]

    def echoed(i: int) -> bool:
        if errors[i]["type"] != "too_short":
            return False
        mine = paths[i]
        return any(len(p) > len(mine) and p[: len(mine)] == mine for p in paths)

    return [e for i, e in enumerate(errors) if not echoed(i)]


def _line_of(path: Loc, doc: _Document) -> int:
    for end in range(len(path), -1, -1):
        if path[:end] in doc.lines:
            return doc.lines[path[:end]]
    return 1


def _known_keys(parent: Loc) -> tuple[str, ...]:
    """The keys valid at ``parent``, for "did you mean" (walks the pydantic models)."""
    model: Any = RulesFile
    for part in parent:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return ()
        annotation = info.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        inner = [a for c in candidates for a in (c, *getattr(c, "__args__", ()))]
        model = next(
            (a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if model is None:
            return ()
    return tuple(getattr(model, "model_fields", {}))


def _describe(error: ErrorDetails, doc: _Document) -> tuple[int, str]:
    path = _path(error["loc"])
    line = _line_of(path, doc)
    where = f"{doc.source}:{line}: {_dotted(path) or '(top level)'}: "
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        if _secret_path(path) and _URLISH.search(key):  # a webhook written as a key
            known = ", ".join(_known_keys(path[:-1]))
            where = f"{doc.source}:{line}: {_dotted(path[:-1])}: "
            return line, f"{where}unknown key (not shown: it looks like a URL; the keys are " \
                f"{known})"
        close = difflib.get_close_matches(key, _known_keys(path[:-1]), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return line, f"{where}unknown key {_short(key)}{hint}"
    if kind == "missing":
        return line, f"{where}missing (required)"
    message = _TYPE_WORDS.get(kind, error["msg"].removeprefix("Value error, "))
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        message = "must not be empty"
    elif kind in _TYPE_WORDS or kind.endswith("_type") or kind in {"literal_error", "enum"}:
        message += _got(error.get("input"), path, doc)
    return line, where + message


_URLISH: Final = re.compile(r"[/:@?]")


def _secret_path(path: Loc) -> bool:
    """Under ``alerts:`` a value (or a misplaced key) may be the webhook with its token."""
    return path[:1] == ("alerts",)


def _got(value: object, path: Loc, doc: _Document) -> str:
    """What was actually there, phrased for someone editing YAML (never a secret's value)."""
    if _secret_path(path):
        return ""
    if value is None:
        return " (the key has no value)"
    if path in doc.raw:
        raw = doc.raw[path] if len(doc.raw[path]) <= 20 else doc.raw[path][:17] + "..."
        if isinstance(value, bool):
            return f" (YAML reads {raw} as the boolean {str(value).lower()})"
        kind = _YAML_TYPE_WORDS.get(type(value).__name__, type(value).__name__)
        return f' (YAML reads {raw} as {kind}; to mean the text, quote it: "{raw}")'
    if isinstance(value, str):
        return f" (got the text {_short(value)})"
    if isinstance(value, dict):
        return " (got a mapping)"
    if isinstance(value, list):
        return " (got a list)"
    return f" (got {type(value).__name__})"
