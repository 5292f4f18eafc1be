"""Strict YAML for the config files: one document, duplicate keys reported, and every way
a document can be malformed turned into a one-line ConfigError with its position.

Shared by `config` and `webconfig`; messages never quote the offending source line, which
may hold a secret or a password hash.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Any

import yaml

from exporter.errors import ConfigError

MERGE_TAG = "tag:yaml.org,2002:merge"
PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
SHOWN_MAX = 64  # longer values are described by their length, not quoted

#: Reports one problem: (key path, message).
Report = Callable[[str, str], None]


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys, which plain YAML silently overwrites."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[tuple[str, int, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # `<<` merges may legitimately repeat keys; only literal repeats are typos.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != MERGE_TAG:
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    mark = key_node.start_mark
                    self.duplicate_keys.append((key_node.value, mark.line + 1, mark.column + 1))
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # Scalars that match a YAML type but cannot be built (an int beyond Python's digit
        # limit, 2024-13-45) raise plain ValueError; give them a position like other errors.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError):
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot convert this {_tag_name(node.tag)} value", node.start_mark
            ) from None


def read(path: str, what: str = "") -> str:
    """The text of the file at `path`; ConfigError if it cannot be read or is not UTF-8.
    `what` prefixes the message (`config.file: `)."""
    try:
        # utf-8-sig: editors on Windows like to prepend a BOM, which is not YAML content.
        with open(path, encoding="utf-8-sig") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f'{what}cannot read "{path}": {exc.strerror or exc}') from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f'{what}cannot read "{path}": not UTF-8 text (byte {exc.start})'
        ) from None


def load(text: str, source: str) -> tuple[Any, list[str]]:
    """The single document in `text`, and one problem line per duplicate key.

    Anything that stops the document from loading raises ConfigError with one line naming
    `source` and the position.
    """
    try:
        # The reader rejects control characters already in the constructor.
        loader = StrictLoader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(source, text, exc)) from None
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(source, text, exc)) from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML document is nested too deeply") from None
    finally:
        loader.dispose()
    duplicates = [
        f"{source}: duplicate key {quote(key)} at line {line} column {column}"
        for key, line, column in loader.duplicate_keys
    ]
    return raw, duplicates


def yaml_problem(source: str, text: str, exc: yaml.YAMLError) -> str:
    # str(exc) quotes the offending source line, which may hold a secret: build our own text.
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        return one_line(f"{source}: YAML syntax error{where}: {what}")
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        return one_line(
            f"{source}: YAML syntax error at line {line} column {column}: "
            f"{exc.reason} (#x{char:04x})"
        )
    return f"{source}: YAML syntax error"


def _tag_name(tag: str) -> str:
    return tag.rsplit(":", 1)[-1]


def mapping(
    raw: object,
    path: str,
    known: tuple[str, ...],
    report: Report,
    unsupported: Mapping[str, str] = MappingProxyType({}),
) -> dict[str, Any] | None:
    """The known keys of a mapping; unknown ones are reported with a spelling hint.

    `unsupported` maps key paths of keys that are recognised but not implemented to a
    description, reported as "... is not supported by this exporter".
    """
    if not isinstance(raw, dict):
        report(path or "<top level>", f"must be a mapping, got {kind(raw)}")
        return None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, str) and key in known:
            out[key] = value
            continue
        key_path = join(path, key)
        if key_path in unsupported:
            report(key_path, f"{unsupported[key_path]} is not supported by this exporter")
            continue
        hint_text = hint(key, known) if isinstance(key, str) else ""
        report(key_path, f"unknown key{hint_text}")
    return out


def kind(value: object) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def quote(value: str) -> str:
    if len(value) > SHOWN_MAX:
        return f"(a {len(value)}-character value, not shown)"
    return json.dumps(value, ensure_ascii=False)


def hint(word: str, choices: tuple[str, ...]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]}?)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def join(path: str, key: object) -> str:
    """`path.key`, or `path["key"]` when the key is not plain."""
    text = str(key)
    if PLAIN_KEY.fullmatch(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{quote(text)}]"


def one_line(text: str) -> str:
    return " ".join(text.split())
