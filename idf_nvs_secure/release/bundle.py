"""Release bundles: every file a factory flashes, described, hashed and zipped reproducibly.

:func:`make_release` turns a resolved project, its security plan and the firmware of a
build into a :class:`Bundle`: the partition table, the NVS images and keys, the
firmware, ``flasher_args.json``/``flash_args`` in ESP-IDF's format, ``report.html``,
``manifest.json`` and a zip of all of them.  :func:`write_bundle` puts it on disk.

Reproducible: the same inputs and key source give the same bytes on every machine and
every run.  Keys must come from an explicit source (a key file, the master secret,
``--master-secret-file``) or be drawn at random on request (``random_keys``, recorded in
the manifest as not reproducible); the development default master secret is refused.
The zip has sorted entries, stored (uncompressed: deflate output depends on the zlib
build, and zlib-ng differs from zlib), every timestamp at ``SOURCE_DATE_EPOCH`` (default
315532800, 1980-01-01T00:00:00Z, the earliest time a zip can record), Unix permissions
0644 (0600 for key material), and no absolute path in any file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import secrets
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .._version import __version__
from ..build.artifacts import build_artifacts
from ..build.flash_encrypt import (
    check_flash_encryption_key,
    encrypt_for_flash,
    stored_encrypted,
)
from ..build.flasher import (
    BuildOutputs,
    FlashImage,
    flash_settings,
    format_encrypted_flash_args,
    format_flash_args,
    format_flasher_args,
)
from ..errors import InputError, KeyMaterialError
from ..formats.nvs_keys import key_fingerprint
from ..fsutil import output_lock, read_input_bytes, write_output_set
from ..inputs.keysource import DERIVATION_VERSION, MasterSecret, read_master_secret
from ..inputs.project import KeySpec, ResolvedProject
from ..plan.security import SecurityPlan

__all__ = [
    "DEFAULT_SOURCE_DATE_EPOCH",
    "MANIFEST_FORMAT",
    "BundleFile",
    "Bundle",
    "source_date_epoch",
    "make_release",
    "build_zip",
    "write_bundle",
    "release_project",
]

#: 1980-01-01T00:00:00Z: the earliest time a zip entry can carry; used when
#: SOURCE_DATE_EPOCH is not set (and for any earlier value, in the zip only).
DEFAULT_SOURCE_DATE_EPOCH = 315532800
#: ``manifest.json`` ``format``: bumped when the manifest changes incompatibly.
MANIFEST_FORMAT = "idf-nvs-secure-release/1"
_HOST_KEY_SOURCES = ("nvs_keys_host", "app", "hmac")


@dataclass(frozen=True)
class BundleFile:
    """One file of the bundle.

    ``name``: POSIX path inside the bundle.  ``offset``: flash offset in bytes (None:
    not flashed).  ``encrypted``: written through flash encryption (flasher_args.json
    ``"encrypted": "true"``); ``pre_encrypted``: already encrypted on the host for its
    offset, so written raw.  ``secret``: key material (mode 0600).
    """

    name: str
    kind: str
    data: bytes
    offset: int | None = None
    section: str | None = None
    partition: str | None = None
    encrypted: bool = False
    pre_encrypted: bool = False
    secret: bool = False
    made_from: tuple[str, ...] = ()
    note: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind,
                               "offset": None if self.offset is None else f"{self.offset:#x}",
                               "size": len(self.data), "sha256": self.sha256,
                               "encrypted": self.encrypted, "pre_encrypted": self.pre_encrypted,
                               "secret": self.secret, "partition": self.partition,
                               "made_from": list(self.made_from)}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Bundle:
    """A release bundle in memory: its files (manifest included), the manifest's data,
    the zip's name and bytes, and notes for the user."""

    files: tuple[BundleFile, ...]
    manifest: Mapping[str, Any]
    zip_name: str
    zip_data: bytes
    notes: tuple[str, ...] = ()

    def find(self, name: str) -> BundleFile | None:
        return next((f for f in self.files if f.name == name), None)


def source_date_epoch(env: Mapping[str, str]) -> int:
    """``SOURCE_DATE_EPOCH`` from ``env`` (seconds since 1970, UTC), or the default."""
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return DEFAULT_SOURCE_DATE_EPOCH
    if not raw.isdigit():
        raise InputError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds",
                         hint="see https://reproducible-builds.org/specs/source-date-epoch/")
    return int(raw)


def _display(path: Path, root: Path) -> str:
    """``path`` relative to the project (POSIX); a file outside it by its name only, so
    no absolute path reaches the bundle."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return f"external:{Path(path).name}"


# --- keys ------------------------------------------------------------------------------


def _release_keys(resolved: ResolvedProject, plan: SecurityPlan, *, override: bool,
                  random_keys: bool) -> dict[str, KeySpec]:
    """The key source of each NVS partition for a release; a silent ``generate`` is
    refused.  ``override`` (--master-secret-file) turns ``generate`` into ``derive``;
    ``random_keys`` turns every host key source into ``generate``."""
    keys = dict(resolved.keys)
    for name, spec in resolved.keys.items():
        nvs_plan = plan.nvs_partition(name)
        if nvs_plan is None or nvs_plan.key_source not in _HOST_KEY_SOURCES:
            continue
        if random_keys:
            keys[name] = KeySpec("generate", where=spec.where)
        elif override and spec.source == "generate":
            keys[name] = KeySpec("derive", where=spec.where)
        elif spec.source == "generate":
            raise KeyMaterialError(
                f"the keys of NVS partition '{name}' have source 'generate': a release "
                f"would hold keys nobody can make again", file=spec.where,
                hint="use keys: {source: derive} with a master secret, a key file, "
                     "--master-secret-file FILE, or --random-keys (recorded as not "
                     "reproducible)")
    return keys


def _master_secret(resolved: ResolvedProject, keys: Mapping[str, KeySpec],
                   env: Mapping[str, str]) -> MasterSecret | None:
    """The project's master secret read once (release mode) when every derived key uses
    it, so the manifest can name it by fingerprint."""
    derived = [s for s in keys.values() if s.source == "derive"]
    if not derived or any(s.master_secret for s in derived) or resolved.master_secret is None:
        return None
    return read_master_secret(resolved.master_secret, env=env, base_dir=resolved.project.root,
                              release=True)


def _keys_json(resolved: ResolvedProject, plan: SecurityPlan, keys: Mapping[str, KeySpec],
               secret: MasterSecret | None, override: bool, reproducible: bool) -> dict:
    root = resolved.project.root
    parts = {}
    for name, spec in keys.items():
        nvs_plan = plan.nvs_partition(name)
        entry: dict[str, Any] = {"source": spec.source,
                                 "key_source": nvs_plan.key_source if nvs_plan else None}
        if spec.file is not None:
            entry["file"] = _display(spec.file, root)
        parts[name] = entry
    out: dict[str, Any] = {"reproducible": reproducible, "derivation": DERIVATION_VERSION,
                           "partitions": parts}
    if secret is not None:
        origin = secret.origin
        if override:
            origin = "--master-secret-file"
        elif origin.startswith("file "):
            origin = "file " + _display(root / origin[5:], root)
        out["master_secret"] = {"origin": origin, "fingerprint": secret.fingerprint}
    return out


# --- inputs ----------------------------------------------------------------------------


def _inputs_json(resolved: ResolvedProject, plan: SecurityPlan, keys: Mapping[str, KeySpec],
                 outputs: BuildOutputs) -> list[dict[str, Any]]:
    project = resolved.project
    root = project.root
    roles: dict[Path, str] = {project.file: "project", project.partitions_file: "partitions"}
    for values in resolved.values.values():
        for path in values.inputs:
            roles.setdefault(path, "values" if path in values.files else "data")
    key_files = {spec.file for spec in keys.values() if spec.file is not None}
    for path in sorted(key_files):
        roles.setdefault(path, "keys")
    for name in plan.config.get("files", ()):
        path = Path(name)
        roles.setdefault(path if path.is_absolute() else root / path, "sdkconfig")
    out = []
    for path, role in roles.items():
        data = read_input_bytes(path)
        item: dict[str, Any] = {"path": _display(path, root), "role": role}
        if role == "keys":
            item["fingerprint"] = key_fingerprint(data)  # key material: no full hash
        else:
            item["sha256"] = hashlib.sha256(data).hexdigest()
        out.append(item)
    for name, data in sorted((outputs.inputs or {}).items()):
        out.append({"path": f"build:{name}", "role": "build",
                    "sha256": hashlib.sha256(data).hexdigest()})
    return out


# --- assembling ------------------------------------------------------------------------


def _flash_files(resolved: ResolvedProject, build, outputs: BuildOutputs,
                 notes: list[str]) -> list[BundleFile]:
    files: list[BundleFile] = []
    for a in build.artifacts:
        name = a.output.bundle_path
        section = "partition-table" if a.kind == "partition_table" else a.partition
        files.append(BundleFile(name, a.kind, a.data, a.offset,
                                section if a.offset is not None else None, a.partition,
                                secret=a.secret, made_from=a.made_from, note=a.note))
    taken = {f.offset: f for f in files if f.offset is not None}
    table = next(f for f in files if f.kind == "partition_table")
    for image in outputs.images:
        ours = taken.get(image.offset)
        if image.section == "partition-table" or ours is table:
            if image.offset != table.offset or image.data != table.data:
                notes.append(f"the build's {image.name} (at 0x{image.offset:x}) differs from "
                             f"the partition table generated from the project; the bundle "
                             f"uses the generated one (rebuild to update the firmware's)")
            continue
        if ours is not None:
            continue
        files.append(BundleFile(image.name, "firmware", image.data, image.offset, image.section,
                                made_from=(f"build:{image.name}",)))
    flash = sorted((f for f in files if f.offset is not None), key=lambda f: f.offset or 0)
    for a, b in zip(flash, flash[1:]):
        if (a.offset or 0) + len(a.data) > (b.offset or 0):
            raise InputError(f"{a.name} (0x{a.offset:x}, {len(a.data)} bytes) overlaps "
                             f"{b.name} at 0x{b.offset:x}",
                             hint="the build and the partition table disagree; rebuild "
                                  "with idf.py build")
    return files


def _apply_flash_encryption(files: list[BundleFile], resolved: ResolvedProject,
                            plan: SecurityPlan, key: bytes | None) -> list[BundleFile]:
    """Mark (development mode) or pre-encrypt (with ``key``) what flash encryption
    stores encrypted; release mode without a key leaves it to the first boot."""
    out = []
    for f in files:
        if f.offset is None or not plan.flash_encryption or not stored_encrypted(
                f.offset, resolved.table):
            out.append(f)
        elif key is not None:
            stem, dot, ext = f.name.rpartition(".")
            name = f"{stem}-enc.{ext}" if dot else f"{f.name}-enc"
            out.append(dataclasses.replace(
                f, name=name, data=encrypt_for_flash(f.data, f.offset, key, target=plan.target),
                pre_encrypted=True, encrypted=False,
                made_from=f.made_from + (f"flash-encryption key {key_fingerprint(key)}",)))
        else:
            out.append(dataclasses.replace(
                f, encrypted=plan.flash_encryption_mode == "development"))
    return out


def _merged(flash: list[BundleFile], chip: str) -> bytes:
    """One image from flash offset 0, made by esptool's own merge-bin (headers kept)."""
    import esptool
    from esptool.cmds import merge_bin

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return merge_bin([(f.offset, f.data) for f in flash], chip)  # type: ignore[misc]
    except esptool.FatalError as exc:
        raise InputError(f"esptool merge-bin: {exc}") from None


def _strip_roots(text: str, roots: list[Path]) -> str:
    """``text`` with the project and build directories' absolute paths made relative
    (messages in the report may name files by absolute path)."""
    for root in roots:
        for form in {str(root), str(root.resolve())}:
            text = text.replace(form + os.sep, "").replace(form, ".")
    return text


def make_release(resolved: ResolvedProject, plan: SecurityPlan, *,
                 outputs: BuildOutputs = BuildOutputs(), env: Mapping[str, str] | None = None,
                 master_secret: MasterSecret | None = None, random_keys: bool = False,
                 flash_encryption_key: bytes | None = None, merged: bool = False,
                 epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
                 rng: Callable[[int], bytes] = secrets.token_bytes,
                 report: Callable[[ResolvedProject, SecurityPlan], str] | None = None,
                 build_dir: Path | None = None) -> Bundle:
    """The release bundle of ``resolved`` under ``plan`` (everything in memory).

    ``outputs``: the build's firmware (:func:`~.flasher.read_build_outputs`).
    ``master_secret``: from ``--master-secret-file``; overrides the project's and makes
    keys of source ``generate`` derived.  ``random_keys``: fresh CSPRNG keys for every
    partition (the manifest says the bundle cannot be reproduced).
    ``flash_encryption_key``: the device's flash-encryption key; every file flash
    encryption stores encrypted is then encrypted here for its offset.  ``merged``: add
    one image of everything from offset 0 (esptool merge-bin).  ``epoch``: the time
    recorded (SOURCE_DATE_EPOCH).  ``report``: renders report.html (None: the default
    renderer of :mod:`.report`).
    """
    env = os.environ if env is None else env
    if master_secret is not None and random_keys:
        raise InputError("--master-secret-file and --random-keys exclude each other",
                         hint="keys are either derived from a secret or random")
    if flash_encryption_key is not None:
        check_flash_encryption_key(flash_encryption_key, plan.flash_encryption_key,
                                   file="--flash-encryption-key")
    keys = _release_keys(resolved, plan, override=master_secret is not None,
                         random_keys=random_keys)
    resolved = dataclasses.replace(resolved, keys=keys)
    secret = master_secret or _master_secret(resolved, keys, env)
    build = build_artifacts(resolved, plan, env=env, keystore=None, rng=rng, release=True,
                            master_secret=secret)
    reproducible = build.reproducible and not random_keys
    notes = list(build.notes)
    if outputs.note:
        notes.append(outputs.note)
    files = _flash_files(resolved, build, outputs, notes)
    files = _apply_flash_encryption(files, resolved, plan, flash_encryption_key)
    flash = sorted((f for f in files if f.offset is not None), key=lambda f: f.offset or 0)
    if plan.flash_encryption_mode == "release" and flash_encryption_key is None:
        notes.append("release-mode flash encryption: flash these files before the first boot "
                     "(the bootloader then encrypts them in place), or pass "
                     "--flash-encryption-key to pre-encrypt them")
    settings = flash_settings(plan.target, plan.symbols, flash_size=plan.flash_size,
                              secure=plan.flash_encryption or bool(plan.symbols.get("SECURE_BOOT")),
                              build=outputs.flasher_args)
    images = [FlashImage(f.section or f.name, f.name, f.offset or 0, f.encrypted)
              for f in flash]
    support = [BundleFile("flasher_args.json", "flasher_args",
                          format_flasher_args(images, settings).encode()),
               BundleFile("flash_args", "flash_args", format_flash_args(images, settings).encode())]
    if any(i.encrypted for i in images):
        support.append(BundleFile("encrypted_flash_args", "flash_args",
                                  format_encrypted_flash_args(images, settings).encode(),
                                  note="esptool write-flash @encrypted_flash_args"))
    if merged:
        note = ("holds plaintext of files written through flash encryption: flash it before "
                "the first boot only" if any(i.encrypted for i in images) else "")
        support.append(BundleFile("merged-flash.bin", "merged_image", _merged(flash, plan.target),
                                  offset=0, made_from=tuple(f.name for f in flash), note=note))
    if report is None:
        from ..views.report import build_report, render_report_html

        def report(r: ResolvedProject, p: SecurityPlan) -> str:
            return render_report_html(build_report(r, p, title=f"NVS security report: "
                                                              f"{r.product_label}"))
    roots = [resolved.project.root] + ([Path(build_dir)] if build_dir else [])
    support.append(BundleFile("report.html", "report",
                              _strip_roots(report(resolved, plan), roots).encode("utf-8")))
    files = sorted(files + support, key=lambda f: f.name)
    manifest = {
        "format": MANIFEST_FORMAT,
        "tool": {"name": "idf-nvs-secure", "version": __version__},
        "product": resolved.product,
        "target": plan.target,
        "source_date_epoch": epoch,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
        "reproducible": reproducible,
        "security": {"nvs_encryption": plan.scheme, "flash_encryption": plan.flash_encryption,
                     "flash_encryption_mode": plan.flash_encryption_mode,
                     "flash_encryption_key": plan.flash_encryption_key,
                     "pre_encrypted": flash_encryption_key is not None,
                     **({"flash_encryption_key_fingerprint":
                         key_fingerprint(flash_encryption_key)} if flash_encryption_key else {})},
        "keys": _keys_json(resolved, plan, keys, secret, master_secret is not None,
                           reproducible),
        "flash_settings": dataclasses.asdict(settings),
        "files": [f.to_json() for f in files],
        # The build's firmware in the bundle; [] for an images-only bundle (no build).
        "firmware": [f.name for f in files if f.kind == "firmware"],
        "inputs": _inputs_json(resolved, plan, keys, outputs),
        "notes": notes,
    }
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    files.append(BundleFile("manifest.json", "manifest", text.encode("utf-8")))
    files.sort(key=lambda f: f.name)
    zip_name = f"{resolved.product_label}-release.zip"
    return Bundle(tuple(files), manifest, zip_name, build_zip(files, epoch), tuple(notes))


def build_zip(files: "list[BundleFile] | tuple[BundleFile, ...]", epoch: int) -> bytes:
    """A byte-for-byte reproducible zip of ``files``: sorted names, stored, every entry
    dated ``epoch`` (no earlier than 1980-01-01), Unix mode 0644 (0600 if secret)."""
    stamp = time.gmtime(max(epoch, DEFAULT_SOURCE_DATE_EPOCH))
    if stamp.tm_year > 2107:
        raise InputError(f"SOURCE_DATE_EPOCH={epoch} is after 2107, beyond what a zip records")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for f in sorted(files, key=lambda f: f.name):
            info = zipfile.ZipInfo(f.name, date_time=tuple(stamp[:6]))  # type: ignore[arg-type]
            info.create_system = 3  # Unix, whatever the host: the mode bits below apply
            info.external_attr = (0o100600 if f.secret else 0o100644) << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, f.data)
    return out.getvalue()


def _refuse_other_keys(bundle: Bundle, out_dir: Path, force: bool) -> None:
    """Key files of the bundle already in ``out_dir`` are replaced by other keys only with
    ``force``: random keys (``--random-keys``) can never be made again."""
    try:
        old = json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))
        before = {f["name"]: f["sha256"] for f in old["files"] if f.get("secret")}
    except (OSError, ValueError, KeyError, TypeError):
        return
    for f in bundle.files:
        if f.secret and f.name in before and before[f.name] != f.sha256 and not force:
            lost = "" if old.get("reproducible", True) else (
                "; they were random keys, which nothing can make again")
            raise KeyMaterialError(
                f"the bundle here holds other keys in {f.name}{lost}",
                file=str(Path(out_dir) / f.name),
                hint="write the new bundle elsewhere, or pass --force to replace them")


def write_bundle(bundle: Bundle, out_dir: Path, *, force: bool = False) -> Path:
    """Write ``bundle`` into ``out_dir`` (which must be empty, absent, or hold an earlier
    bundle, which is replaced as a whole) as one output set: staged beside it, the
    manifest last, renamed into place, under the folder's lock.  Key files of the earlier
    bundle are replaced by other keys only with ``force``.  Returns the zip's path."""
    files = [(f.name, f.data, f.secret) for f in bundle.files if f.name != "manifest.json"]
    files.append((bundle.zip_name, bundle.zip_data, any(f.secret for f in bundle.files)))
    manifest = bundle.find("manifest.json")
    with output_lock(out_dir):
        _refuse_other_keys(bundle, out_dir, force)
        write_output_set(out_dir, files, owned="manifest.json",
                         manifest=("manifest.json", manifest.data) if manifest else None)
    return Path(out_dir) / bundle.zip_name


def release_project(project_dir: Path, out_dir: Path, *, product: str | None = None,
                    sdkconfig: Path | None = None, build_dir: Path | None = None,
                    env: Mapping[str, str] | None = None, force: bool = False,
                    **options: Any) -> tuple[Bundle, Path]:
    """Plan ``project_dir`` for ``product``, read its build's firmware, make the release
    bundle and write it: what ``idf-nvs-secure release`` and ``idf.py nvs-secure-release``
    do.  ``options`` go to :func:`make_release`.  Raises when the plan has errors."""
    from ..build.flasher import read_build_outputs
    from ..inputs.project import load_project
    from ..plan.project_plan import plan_project

    env = os.environ if env is None else env
    planned = plan_project(load_project(project_dir), product, sdkconfig=sdkconfig,
                           build_dir=build_dir, env=env)
    resolved, plan = planned.resolved, planned.security
    if plan.errors:
        raise InputError(f"the security plan has {len(plan.errors)} error(s): "
                         f"{plan.errors[0].message}", hint="run 'idf-nvs-secure detect' for all")
    build_dir = Path(build_dir) if build_dir else resolved.project.root / "build"
    outputs = read_build_outputs(build_dir, table=resolved.table, target=plan.target)
    bundle = make_release(resolved, plan, outputs=outputs, env=env,
                          epoch=source_date_epoch(env), build_dir=build_dir, **options)
    return bundle, write_bundle(bundle, out_dir, force=force)
