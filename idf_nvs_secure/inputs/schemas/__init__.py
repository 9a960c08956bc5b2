"""JSON Schemas for the three YAML kinds, and validation that reports file:line:col.

The schemas ship in this package so editors can check files too: put
``# yaml-language-server: $schema=<path printed by idf-nvs-secure schema-path KIND>``
on the first line of a YAML file.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from typing import TYPE_CHECKING

from ...errors import ErrorCollector, InputError
from ..yamlsource import YamlDocument

if TYPE_CHECKING:  # pragma: no cover
    import jsonschema

# jsonschema is imported when a document is first validated (about 60 ms), so commands
# that read no YAML (nvs build of a CSV, cmake-dir, --help) never pay for it.

__all__ = ["SCHEMA_KINDS", "load_schema", "schema_comment", "schema_path", "validate_document"]

#: Schema kind -> file name in this package.
SCHEMA_KINDS = {
    "partitions": "partitions.schema.json",
    "nvs_values": "nvs_values.schema.json",
    "project": "project.schema.json",
}


def schema_path(kind: str) -> Path:
    """Filesystem path of a shipped schema (for the yaml-language-server line)."""
    return Path(str(resources.files(__name__) / SCHEMA_KINDS[kind]))


def schema_comment(kind: str) -> str:
    """The first line written files carry: the schema by its name in the package, never
    by a path of this machine (the file is committed and read on other machines)."""
    return (f"# Schema: idf_nvs_secure/inputs/schemas/{SCHEMA_KINDS[kind]} (for editor "
            "checks, see the README's \"Editor support\")")


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict:
    return json.loads((resources.files(__name__) / SCHEMA_KINDS[kind]).read_text("utf-8"))


@lru_cache(maxsize=None)
def _validator(kind: str) -> "jsonschema.protocols.Validator":
    import jsonschema

    schema = load_schema(kind)
    # The shipped schemas are checked against their metaschema by the tests
    # (test_batch_layouts.py), not on every run: that check alone took ~60 ms of start-up.
    return jsonschema.validators.validator_for(schema)(schema)


_YAML_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true/false",
               "null": "null"}
_PY_NAMES = {dict: "a mapping", list: "a list", str: "a string", int: "an integer",
             float: "a number", bool: "true/false", type(None): "null"}


def _kinds(schemas: list[dict]) -> list[str]:
    kinds: list[str] = []
    for alt in schemas:
        types = alt.get("type", [])
        for t in [types] if isinstance(types, str) else types:
            if _YAML_NAMES[t] not in kinds:
                kinds.append(_YAML_NAMES[t])
    return kinds


def _describe(error: "jsonschema.ValidationError") -> tuple[str, bool]:
    """A readable message for one schema error, and whether it is about a key."""
    validator = error.validator
    if validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        name = extra[0] if extra else "?"
        return f"unknown field '{name}' (expected one of: {allowed})", True
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required field '{missing}'", False
    if validator == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"'{error.instance}' is not one of: {choices}", False
    if validator == "const":
        return f"must be {error.validator_value!r}, not {error.instance!r}", False
    got = _PY_NAMES.get(type(error.instance), type(error.instance).__name__)
    if validator == "type":
        expected = error.validator_value
        kinds = _kinds([{"type": expected}])
        return f"expected {' or '.join(kinds)}, got {got}", False
    if validator in ("anyOf", "oneOf") and _kinds(error.validator_value):
        return f"expected {' or '.join(_kinds(error.validator_value))}, got {got}", False
    return error.message, False


def validate_document(doc: YamlDocument, kind: str) -> None:
    """Check ``doc`` against the schema of ``kind``; raise every error, located.

    Each place the schema rejects is one error (for alternatives, jsonschema's
    ``best_match`` picks the most relevant reason), at the line and column of the
    offending value, or of its key for an unknown field; several are raised together as
    :class:`~...errors.InputErrors`, in file order.
    """
    if doc.data is None:
        raise InputError("the file is empty", file=doc.filename, line=1)
    found = list(_validator(kind).iter_errors(doc.data))
    if not found:
        return
    from jsonschema.exceptions import best_match

    def under(error):
        yield error
        for child in error.context or ():
            yield from under(child)

    def reasons(error) -> list:
        """The errors to report for ``error``: itself, or for alternatives (anyOf) every
        error of the alternative ``best_match`` finds most relevant, so two bad keys of
        one namespace are two errors."""
        best = best_match([error])
        if not error.context or best is error:
            return [best]
        branch = next((c.schema_path[0] for c in error.context
                       if any(x is best for x in under(c))), None)
        if branch is None:
            return [best]
        return [r for c in error.context if c.schema_path[0] == branch for r in reasons(c)]

    located: dict[tuple, InputError] = {}
    for error in (r for e in found for r in reasons(e)):
        path = tuple(error.absolute_path)
        message, about_key = _describe(error)
        if about_key and error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            path = path + (extra[0],) if extra else path
        exc = doc.error(path, message, key=about_key)
        located.setdefault((exc.line or 0, exc.col or 0, exc.message), exc)
    errors = ErrorCollector()
    errors.errors = [located[k] for k in sorted(located)]
    errors.raise_any()
