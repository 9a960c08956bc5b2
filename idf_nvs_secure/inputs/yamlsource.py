"""YAML documents that remember where every value came from.

PyYAML's composer gives each node a start mark; we build plain Python data from the
node tree and keep a map from the path of each value (a tuple of mapping keys and
sequence indexes) to its 1-based line and column, so that any later check, schema or
semantic, can report ``file:line:col``.  Duplicate mapping keys, which PyYAML would
silently collapse, are an error here.

Loading has limits, so that no file can make it run long or fail with a traceback:
aliases may expand to at most :data:`MAX_ALIAS_NODES` nodes in all (counted while
composing, so a "billion laughs" file stops at once), nesting is at most
:data:`MAX_DEPTH` levels, and an alias inside the node it names (``a: &a [*a]``), a tag
other than YAML's plain ones (``!foo``, ``!!binary``) and a control character in the
text are each an :class:`~idf_nvs_secure.errors.InputError` with its location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml

from ..errors import InputError
from .textcheck import control_character

__all__ = ["MAX_ALIAS_NODES", "MAX_DEPTH", "YamlDocument", "load_yaml", "Path_"]

Path_ = tuple  # a path into a document: mapping keys (str) and sequence indexes (int)

#: Nodes that aliases may add to a document in all (each alias adds its anchor's whole
#: expanded subtree).
MAX_ALIAS_NODES = 10_000
#: Deepest nesting of lists and mappings.
MAX_DEPTH = 100
_PLAIN = "tag:yaml.org,2002:"
#: The tags a document may carry (YAML's plain ones; timestamps stay strings).
_TAGS = {_PLAIN + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}


class _Refused(Exception):
    """A limit hit while composing: the message and the mark of the offending event."""

    def __init__(self, message: str, mark: yaml.Mark, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.mark, self.hint = message, mark, hint


class _Loader(yaml.SafeLoader):
    """SafeLoader whose timestamps stay strings (a date is never an NVS value), and whose
    composer counts alias expansion and nesting and refuses recursive aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: set[str] = set()  # anchors whose node is still being composed
        self._sizes: dict[int, int] = {}  # id(node) -> nodes in its expanded subtree
        self._expanded = 0
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D102 - yaml.composer.Composer's hook
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _Refused(f"alias *{event.anchor} is inside the node it names "
                               f"(a recursive alias)", event.start_mark,
                               hint="an alias may only name a node that has ended before it")
            node = super().compose_node(parent, index)
            self._expanded += self._size(node)
            if self._expanded > MAX_ALIAS_NODES:
                raise _Refused(f"aliases expand to more than {MAX_ALIAS_NODES} nodes",
                               event.start_mark, hint="write the values out, or use fewer "
                               "nested aliases")
            return node
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)

    def _size(self, node: yaml.Node) -> int:
        """Nodes in ``node``'s subtree with its aliases expanded (memoised: shared
        subtrees are counted once per use, computed once)."""
        size = self._sizes.get(id(node))
        if size is None:
            if isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._size(item) for item in node.value)
            elif isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
            else:
                size = 1
            self._sizes[id(node)] = size
        return size


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

    def path_text(self, path: Iterable[Any], text: str, what: str = "path") -> str:
        """``text``, a file path this document names at ``path``; a NUL or other control
        character in it is an :class:`InputError` located at the value."""
        bad = control_character(text)
        if bad:
            raise self.error(path, f"{what} {text!r} contains a control character ({bad})")
        return text

    def error(self, path: Iterable[Any], message: str, *, key: bool = False,
              hint: str | None = None, cls: type[InputError] = InputError) -> InputError:
        """An error located at ``path`` in this document (raise it)."""
        line, col = self.where(path, key=key)
        return cls(message, file=self.filename, line=line, col=col, hint=hint)


def load_yaml(text: str, filename: str) -> YamlDocument:
    """Parse one YAML document; syntax errors, duplicate keys, unknown tags and the limits
    of the module docstring raise :class:`InputError`."""
    loader = None
    try:
        loader = _Loader(text)  # checks every character first
        node = loader.get_single_node()
    except _Refused as exc:
        raise InputError(exc.message, file=filename, line=exc.mark.line + 1,
                         col=exc.mark.column + 1, hint=exc.hint) from None
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
    except yaml.reader.ReaderError as exc:
        before = text[:exc.position] if isinstance(exc.position, int) else ""
        what = control_character(chr(exc.character)) if isinstance(exc.character, int) else None
        raise InputError(f"YAML text may not contain the character {what or 'found here'}",
                         file=filename, line=before.count("\n") + 1,
                         col=len(before) - (before.rfind("\n") + 1) + 1,
                         hint='write it as an escape in a double-quoted string ("\\x01") '
                              'if it is really meant') from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise InputError(f"YAML error: {' '.join(str(exc).split())}", file=filename) from None
    except RecursionError:  # pragma: no cover - MAX_DEPTH stops nesting well before
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=filename) from None
    finally:
        if loader is not None:
            loader.dispose()
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
    if node.tag not in _TAGS and node.tag != _PLAIN + "merge":
        line, col = _pos(node)
        tag = node.tag.replace(_PLAIN, "!!")
        raise InputError(f"unknown YAML tag '{tag}'", file=doc.filename, line=line, col=col,
                         hint="plain YAML only: text, numbers, true/false, null, lists and "
                              "mappings (quote a value that starts with '!')")
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
