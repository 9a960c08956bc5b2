"""YAML documents that remember where every value came from.

PyYAML's composer gives each node a start mark; we build plain Python data from the
node tree and keep a map from the path of each value (a tuple of mapping keys and
sequence indexes) to its 1-based line and column, so that any later check, schema or
semantic, can report ``file:line:col``.  Duplicate mapping keys, which PyYAML would
silently collapse, are an error here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from ..errors import InputError

__all__ = ["YamlDocument", "load_yaml", "Path_"]

Path_ = tuple  # a path into a document: mapping keys (str) and sequence indexes (int)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose timestamps stay strings (a date is never an NVS value)."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class YamlDocument:
    """Plain data (dict/list/str/int/float/bool/None) plus where each value stands."""

    data: Any
    filename: str
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Iterable[Any], *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column of the value at ``path`` (of its key with ``key=True``).

        Falls back to the nearest enclosing value that has a position.
        """
        path = tuple(path)
        table = self.key_positions if key else self.positions
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.positions:
                return self.positions[path]
        return (None, None)

    def error(self, path: Iterable[Any], message: str, *, key: bool = False,
              hint: str | None = None, cls: type[InputError] = InputError) -> InputError:
        """An error located at ``path`` in this document (raise it)."""
        line, col = self.where(path, key=key)
        return cls(message, file=self.filename, line=line, col=col, hint=hint)


def load_yaml(text: str, filename: str) -> YamlDocument:
    """Parse one YAML document; syntax errors and duplicate keys raise :class:`InputError`."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise InputError(
            f"YAML syntax error: {problem}",
            file=filename,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
            hint="values with ':' or '#' in them need quotes",
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise InputError(f"YAML error: {exc}", file=filename) from None
    doc = YamlDocument(data=None, filename=filename)
    if node is not None:
        doc.data = _convert(node, (), doc)
    return doc


def _construct_scalar(node: yaml.Node) -> Any:
    # Tags were resolved while composing; constructing a scalar needs no stream.
    return _Loader("").construct_object(node)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node: yaml.Node, path: tuple, doc: YamlDocument) -> Any:
    doc.positions[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InputError("YAML merge keys (<<) are not supported", file=doc.filename,
                                 line=_pos(key_node)[0], col=_pos(key_node)[1])
            key = None if isinstance(key_node, yaml.CollectionNode) else _construct_scalar(key_node)
            if key is None or isinstance(key, (list, dict)):
                raise InputError("mapping keys must be plain scalars", file=doc.filename,
                                 line=_pos(key_node)[0], col=_pos(key_node)[1])
            if not isinstance(key, str):
                key = str(key) if not isinstance(key, bool) else str(key).lower()
            if key in result:
                line, col = _pos(key_node)
                first = doc.key_positions[path + (key,)][0]
                raise InputError(f"duplicate key '{key}' (first defined on line {first})",
                                 file=doc.filename, line=line, col=col)
            doc.key_positions[path + (key,)] = _pos(key_node)
            result[key] = _convert(value_node, path + (key,), doc)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), doc) for i, item in enumerate(node.value)]
    return _construct_scalar(node)
