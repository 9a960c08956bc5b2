"""NVS values in YAML: namespaces map to keys, each with a type and one value source.

A values file::

    device:                                  # namespace (at most 15 bytes)
      serial: SN-0001                        # a bare string is a string
      boot_count: {type: u32, value: 7}      # integers always name their type
      calibration: {type: float, value: 1.25}
      cert: {type: blob, file: certs/dev.der}   # relative to this YAML file; a regular
                                                # file no larger than one entry holds
      token: {type: blob, hex: "de ad be ef"}
      logo: {type: blob, base64: "R0lG..."}
      wifi_pass: {type: string, env: WIFI_PASSWORD}   # unset variable: an error
      ssid: {type: blob, value: MySSID, fill: {size: 32, byte: 0x00, length_prefix: u32}}
      pswd: {type: blob, env: WIFI_PASSWORD, fill: {size: 64, byte: 0x00}}

``fill`` makes a fixed-size blob field from its content (text as UTF-8, or the bytes of
hex, base64 or file; none: only pad bytes): ``size`` bytes padded with ``byte``, and with
``length_prefix: u32`` the content's length first as a little-endian u32.  It is the CSV's
``blob_fill(N;0xHH)`` and, with the prefix, ``blob_sz_fill(N;0xHH)``.

Values from ``env:`` and values marked ``secret: true`` are secret: they are masked when
shown, and no error message ever contains them.

Files after the first are *overlays* (a product's values): they replace keys, add keys
and namespaces, and remove a key or a namespace with ``null``.  An overlay may give a
bare number for a key the base already types (the type is kept, so no value silently
changes width).  Mapping order is entry order, so images are deterministic.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import ErrorCollector, InputError
from ..formats.nvs_image import NVS_TYPES, SECRET_NOT_SHOWN, NvsEntry, validate_entry
from ..formats.nvs_layout import BLOB_MAX_SIZE, STR_LEN_MAX_SIZE
from ..fsutil import display_path, read_input_text, read_regular_file
from .nvs_csv import BlobFill, fill_blob

if TYPE_CHECKING:  # pragma: no cover
    from .yamlsource import YamlDocument

# The YAML reader and the schema checker load only when a YAML file is read: a CSV-only
# `nvs build` needs neither (NvsValues, which it does need, lives here).

__all__ = ["NvsValues", "load_nvs_values", "parse_nvs_values_document", "format_nvs_values_yaml"]

_INT_TYPES = {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"}
_FLOAT_TYPES = {"float", "double"}
_SOURCES = ("value", "hex", "base64", "file", "env")
MAX_NAME_BYTES = 15
#: What an entry holds while its environment variable is unset (``defer_unset``).
_STAND_IN: dict[str, Any] = {"string": "", "blob": b"", "float": 0.0, "double": 0.0}


@dataclass
class NvsValues:
    """The merged values of one NVS partition.

    ``namespaces`` keeps entry order: namespace by first appearance, keys in order.
    ``secrets`` names the (namespace, key) pairs to mask when shown; ``files`` lists the
    values files applied, in order; ``inputs`` every file read (those and the files they
    reference), for build dependencies and manifests.  ``external_files`` are the
    ``file:`` sources read from outside the project folder (resolved, symlinks
    followed, in reading order): allowed, but a plan lists them so a review sees them.
    """

    namespaces: dict[str, dict[str, NvsEntry]] = field(default_factory=dict)
    secrets: set[tuple[str, str]] = field(default_factory=set)
    files: list[Path] = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list)
    external_files: tuple[Path, ...] = ()
    #: Environment variables the values read, in order of first use.
    env_vars: dict[str, None] = field(default_factory=dict)
    #: With ``defer_unset``: (namespace, key) -> (variable, error) of a value whose variable
    #: is unset (its entry holds a stand-in of its type); raised by :meth:`check_complete`.
    unset: dict[tuple[str, str], tuple[str, InputError]] = field(default_factory=dict)
    defer_unset: bool = False

    def check_complete(self, supplied: "set[tuple[str, str]] | frozenset" = frozenset()) -> None:
        """Raise the first deferred error of an unset variable, if any; a (namespace, key)
        in ``supplied`` has its value from elsewhere (a batch's devices CSV)."""
        for path, (_var, error) in self.unset.items():
            if path not in supplied:
                raise error

    def unset_variable(self, namespace: str, key: str) -> str | None:
        """The unset environment variable the value of ``namespace.key`` waits for."""
        held = self.unset.get((namespace, key))
        return held[0] if held else None

    @property
    def entries(self) -> list[NvsEntry]:
        return [e for keys in self.namespaces.values() for e in keys.values()]

    def lookup(self, namespace: str, key: str) -> NvsEntry | None:
        return self.namespaces.get(namespace, {}).get(key)


def load_nvs_values(files: Sequence[Path], *, env: Mapping[str, str],
                    values: NvsValues | None = None, root: Path | None = None,
                    defer_unset: bool = False) -> NvsValues:
    """Read ``files`` in order, the first as the base (unless ``values`` is given) and the
    rest as overlays over it.  ``root`` is the project folder (by default each values
    file's own folder): ``file:`` sources outside it go into ``external_files``.

    ``defer_unset``: a value from an unset environment variable is not an error yet (its
    entry holds a stand-in, the error waits in ``unset``), so commands that only plan or
    show never need secret values."""
    from .yamlsource import load_yaml

    result = values if values is not None else NvsValues(defer_unset=defer_unset)
    for i, path in enumerate(files):
        text = read_input_text(path)
        result.files.append(Path(path))
        result.inputs.append(Path(path))
        doc = load_yaml(text, display_path(path))
        parse_nvs_values_document(doc, base_dir=Path(path).parent, env=env, into=result,
                                  overlay=values is not None or i > 0, root=root)
    return result


def parse_nvs_values_document(doc: YamlDocument, *, base_dir: Path, env: Mapping[str, str],
                              into: NvsValues, overlay: bool, root: Path | None = None,
                              read_bytes: Callable[..., bytes] = read_regular_file) -> None:
    """Apply one values document to ``into`` (schema first, then meaning).

    ``file:`` sources are read with ``read_bytes(path, max_bytes=..., what=...)``: only
    regular files no larger than the type can store; those outside ``root`` (default
    ``base_dir``) are recorded in ``into.external_files``."""
    from .schemas import validate_document

    validate_document(doc, "nvs_values")
    errors = ErrorCollector()  # keys are independent: every bad one is reported at once
    for ns, keys in doc.data.items():
        with errors.catch():
            _check_name(doc, (ns,), ns, "namespace")
        if keys is None:
            with errors.catch():
                _remove_namespace(doc, ns, into, overlay)
            continue
        target = into.namespaces.setdefault(ns, {})
        for key, spec in keys.items():
            with errors.catch():
                _apply_key(doc, (ns, key), spec, target, into, overlay, base_dir, env,
                           read_bytes, root)
        if not target:
            del into.namespaces[ns]
    errors.raise_any()


def _remove_namespace(doc: YamlDocument, ns: str, into: NvsValues, overlay: bool) -> None:
    """``ns: null``: an overlay removes the namespace (a base may not have it empty)."""
    if not overlay:
        raise doc.error((ns,), f"namespace '{ns}' has no keys")
    if ns not in into.namespaces:
        raise doc.error((ns,), f"overlay removes namespace '{ns}', which the base "
                        f"does not have", key=True, hint=_known(into.namespaces))
    del into.namespaces[ns]
    into.secrets = {s for s in into.secrets if s[0] != ns}
    into.unset = {k: v for k, v in into.unset.items() if k[0] != ns}


def _apply_key(doc: YamlDocument, path: tuple[str, str], spec: Any,
               target: dict[str, NvsEntry], into: NvsValues, overlay: bool, base_dir: Path,
               env: Mapping[str, str], read_bytes: Callable[..., bytes],
               root: Path | None) -> None:
    """Apply one key of a values document to ``target`` (its namespace in ``into``)."""
    ns, key = path
    _check_name(doc, path, key, "key")
    base = target.get(key)
    if spec is None:
        if not overlay:
            raise doc.error(path, f"key '{key}' has no value")
        if base is None:
            known = _known(target) if ns in into.namespaces else None
            what = "key" if into.namespaces.get(ns) else "namespace"
            raise doc.error(path, f"overlay removes '{ns}.{key}', but the base has no "
                            f"such {what}", key=True, hint=known)
        del target[key]
        into.secrets.discard(path)
        into.unset.pop(path, None)
        return
    into.unset.pop(path, None)
    entry, secret = _entry(doc, path, spec, base, base_dir, env, read_bytes, into,
                           root if root is not None else base_dir)
    target[key] = entry
    if secret:
        into.secrets.add(path)
    else:
        into.secrets.discard(path)


def _known(names: Mapping[str, Any]) -> str | None:
    return f"known: {', '.join(names)}" if names else None


def _check_name(doc: YamlDocument, path: tuple, name: str, what: str) -> None:
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        noun = "namespaces" if what == "namespace" else "keys"
        raise doc.error(path, f"{what} '{name}' is {size} bytes; NVS {noun} are at most "
                        f"{MAX_NAME_BYTES}", key=True)


def _entry(doc: YamlDocument, path: tuple, spec: Any, base: NvsEntry | None, base_dir: Path,
           env: Mapping[str, str], read_bytes: Callable[..., bytes],
           into: NvsValues, root: Path) -> tuple[NvsEntry, bool]:
    ns, key = path
    line, col = doc.where(path)
    if isinstance(spec, bool):
        raise doc.error(path, "NVS has no boolean type", hint=f"write {{type: u8, value: "
                        f"{int(spec)}}}")
    if isinstance(spec, str):
        if base is not None and base.type != "string":
            raise doc.error(path, f"'{ns}.{key}' is a {base.type} in the base; a bare text "
                            f"value would make it a string",
                            hint=f"write {{type: {base.type}, ...}} to change it explicitly")
        spec = {"type": "string", "value": spec}
    elif isinstance(spec, (int, float)):
        if base is None or base.type not in _INT_TYPES | _FLOAT_TYPES:
            raise doc.error(path, "a number needs an explicit type",
                            hint=f"write {{type: u32, value: {spec}}} (or i8..u64, float, double)")
        spec = {"type": base.type, "value": spec}
    type_ = spec.get("type") or (base.type if base is not None else None)
    if type_ is None:
        raise doc.error(path, f"key '{key}' needs a type", hint="one of: " + ", ".join(NVS_TYPES))
    if "fill" in spec:  # a fixed-size blob field (CSV blob_fill / blob_sz_fill)
        return _filled_entry(doc, path, spec, type_, base_dir, env, read_bytes, into)
    sources = [s for s in _SOURCES if s in spec]
    if len(sources) != 1:
        found = ", ".join(sources) if sources else "none"
        raise doc.error(path, f"key '{key}' needs exactly one of value, hex, base64, file, env "
                        f"(found: {found})")
    source = sources[0]
    spath = path + (source,)
    raw = spec[source]
    secret = bool(spec.get("secret", False)) or source == "env"
    if source == "env":
        into.env_vars.setdefault(raw, None)
        if raw not in env:
            error = doc.error(spath, f"environment variable {raw} is not set",
                              hint=f"export {raw}=... (an unset variable is never an empty value)")
            if not into.defer_unset:
                raise error
            into.unset[path] = (raw, error)
            return NvsEntry(ns, key, type_, _STAND_IN.get(type_, 0), file=doc.filename,
                            line=line, col=col), True
        value = _from_text(doc, spath, type_, env[raw], f"environment variable {raw}", True)
    elif source == "file":
        file_path = base_dir / doc.path_text(spath, raw, "file")
        try:
            data = read_bytes(file_path, max_bytes=_FILE_LIMITS.get(type_, STR_LEN_MAX_SIZE),
                              what=f"file '{raw}'")
        except InputError as exc:
            message = exc.message
            if message.startswith("no such"):
                message = (f"file '{raw}' not found (relative to "
                           f"{display_path(base_dir) or '.'})")
            raise doc.error(spath, message) from None
        into.inputs.append(file_path)
        _note_external(into, file_path, root)
        if type_ == "blob":
            value = data
        elif type_ == "string":
            try:
                value = data.decode("utf-8")
            except UnicodeDecodeError:
                raise doc.error(spath, f"file '{raw}' is not UTF-8 text",
                                hint="use type: blob for binary data") from None
        else:
            value = _from_text(doc, spath, type_, data.decode("utf-8", "replace").strip(),
                               f"file '{raw}'", secret)
    elif source in ("hex", "base64"):
        if type_ != "blob":
            raise doc.error(spath, f"{source} gives bytes, so the type must be blob, not {type_}")
        value = _decode_bytes(doc, spath, source, raw)
    else:
        value = _inline(doc, spath, type_, raw, secret)
    entry = NvsEntry(ns, key, type_, value, file=doc.filename, line=line, col=col)
    validate_entry(entry, secret=secret)
    return entry, secret


#: Largest file a ``file:`` source may name, by type: what one NVS entry can hold (a
#: format-version-2 blob, a string less its NUL); other types are short text.
_FILE_LIMITS = {"blob": BLOB_MAX_SIZE, "string": STR_LEN_MAX_SIZE - 1}


def _note_external(into: NvsValues, path: Path, root: Path) -> None:
    """Record ``path`` in ``into.external_files`` when it resolves outside ``root``."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(root).resolve()) and resolved not in into.external_files:
        into.external_files += (resolved,)


def _filled_entry(doc: YamlDocument, path: tuple, spec: dict, type_: str, base_dir: Path,
                  env: Mapping[str, str], read_bytes: Callable[..., bytes],
                  into: NvsValues) -> tuple[NvsEntry, bool]:
    """A ``fill:`` value: its content (at most one source) padded into a blob field."""
    ns, key = path
    line, col = doc.where(path)
    fill_path = path + ("fill",)
    if type_ != "blob":
        raise doc.error(fill_path, f"fill makes a blob, so the type must be blob, not {type_}")
    fill = BlobFill(spec["fill"]["size"], spec["fill"]["byte"],
                    spec["fill"].get("length_prefix") == "u32")
    sources = [s for s in _SOURCES if s in spec]
    if len(sources) > 1:
        raise doc.error(path, f"key '{key}' with fill takes at most one of value, hex, base64, "
                        f"file, env (found: {', '.join(sources)})")
    secret = bool(spec.get("secret", False))
    content, where = b"", fill_path
    if sources:
        source = sources[0]
        where = path + (source,)
        raw = spec[source]
        if source == "value":
            if not isinstance(raw, str):
                shown = "a secret value" if secret else repr(raw)
                raise doc.error(where, f"the text a fill pads must be a string, got {shown}",
                                hint=f"quote it: value: \"{raw}\"")
            content = raw.encode("utf-8")
        elif source == "env":
            into.env_vars.setdefault(raw, None)
            secret = True
            if raw not in env:
                error = doc.error(where, f"environment variable {raw} is not set",
                                  hint=f"export {raw}=... (an unset variable is never an "
                                       f"empty value)")
                if not into.defer_unset:
                    raise error
                into.unset[path] = (raw, error)
            else:
                content = env[raw].encode("utf-8")
        elif source == "file":
            try:
                content = read_bytes(base_dir / raw, max_bytes=fill.size, what=f"file '{raw}'")
            except InputError as exc:
                raise doc.error(where, exc.message, hint=exc.hint) from None
            into.inputs.append(base_dir / raw)
        else:
            content = _decode_bytes(doc, where, source, raw)
    try:
        value = fill_blob(content, fill, f"key '{key}'")
    except InputError as exc:
        raise doc.error(where, exc.message, hint=exc.hint) from None
    entry = NvsEntry(ns, key, "blob", value, file=doc.filename, line=line, col=col)
    validate_entry(entry, secret=secret)
    return entry, secret


def _decode_bytes(doc: YamlDocument, path: tuple, encoding: str, text: str) -> bytes:
    compact = "".join(text.split())
    try:
        if encoding == "hex":
            return bytes.fromhex(compact)
        return base64.b64decode(compact, validate=True)
    except (ValueError, binascii.Error):
        raise doc.error(path, f"not valid {encoding}") from None


def _inline(doc: YamlDocument, path: tuple, type_: str, raw: Any, secret: bool) -> Any:
    shown = SECRET_NOT_SHOWN if secret else repr(raw)
    if type_ in _INT_TYPES:
        if isinstance(raw, bool) or not isinstance(raw, int):
            if isinstance(raw, str):
                return _from_text(doc, path, type_, raw, "value", secret)
            raise doc.error(path, f"{type_} needs a whole number, got {shown}")
        return raw
    if type_ in _FLOAT_TYPES:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise doc.error(path, f"{type_} needs a number, got {shown}")
        return float(raw)
    if type_ == "string":
        if not isinstance(raw, str):
            raise doc.error(path, f"string value must be text, got {shown}",
                            hint="quote it: value: \"...\"" if secret
                            else f"quote it: value: \"{raw}\"")
        return raw
    raise doc.error(path, "a blob's bytes come from hex, base64 or file, not value")


def _from_text(doc: YamlDocument, path: tuple, type_: str, text: str, what: str,
               secret: bool) -> Any:
    """``text`` (from ``what``: a value, a variable, a file) as a ``type_`` value; a
    ``secret`` text is never shown in the error."""
    if type_ == "string":
        return text
    if type_ == "blob":
        return _decode_bytes(doc, path, "hex", text)
    try:
        if type_ in _INT_TYPES:
            return int(text.strip(), 0)
        value = float(text.strip())
        if math.isnan(value) and "nan" not in text.lower():  # pragma: no cover
            raise ValueError
        return value
    except ValueError:
        if secret:
            raise doc.error(path, f"{what} does not hold a {type_} (its value is secret, not "
                            f"shown)", hint=_NUMBER_HINT[type_ in _INT_TYPES]) from None
        raise doc.error(path, f"{what} holds {text!r}, which is not a {type_}") from None


_NUMBER_HINT = {True: "a whole number: decimal, or 0x hex", False: "a number, such as 1.25"}


def format_nvs_values_yaml(values: Mapping[str, Mapping[str, NvsEntry]], *,
                           files: Mapping[tuple[str, str], str] | None = None,
                           schema_line: str | None = None) -> str:
    """YAML text for ``values``: strings as bare text, numbers typed, blobs as hex (or a
    ``file:`` reference where ``files`` names one for that key)."""
    import yaml

    files = files or {}
    doc: dict[str, dict[str, Any]] = {}
    for ns, keys in values.items():
        out: dict[str, Any] = {}
        for key, e in keys.items():
            if (ns, key) in files:
                out[key] = {"type": e.type, "file": files[(ns, key)]}
            elif e.type == "string":
                out[key] = e.value
            elif e.type == "blob":
                out[key] = {"type": "blob", "hex": bytes(e.value).hex()}
            else:
                out[key] = {"type": e.type, "value": e.value}
        doc[ns] = out
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=None,
                          width=100)
    return (f"{schema_line}\n" if schema_line else "") + text
