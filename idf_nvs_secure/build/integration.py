"""What ESP-IDF's build does with a project: the files it writes and reads, and flashing.

:func:`plan_build_integration` turns a resolved project, its security plan and its built
artifacts into a :class:`BuildIntegration`: the exact files the build writes (the NVS
images, the nvs_keys image when the host provides the keys, the HMAC key), the exact
files it reads, the files whose change must re-run CMake's configure step, how each
image is registered with ESP-IDF's flash targets, the partitions that
``idf.py nvs-keys-erase`` erases, and the messages the build prints.

The CMake layer (``idf-nvs-secure cmake-configure``) writes it out as a CMake include
file plus a JSON manifest, and the idf.py extension reads the manifest back with
:meth:`BuildIntegration.from_json`; neither decides anything itself.

Flashing rules, after ESP-IDF's ``nvs_create_partition_image()``:

* NVS data images are written in plain text (``ALWAYS_PLAINTEXT``): NVS encryption is
  XTS inside the image, never flash encryption.
* An nvs_keys image is written through flash encryption under development-mode flash
  encryption (``idf.py encrypted-flash`` encrypts it; ``idf.py flash`` writes it in
  plain text for the first boot, when the bootloader encrypts it in place).
* Under release-mode flash encryption the device takes no plain-text key partition once
  it has booted, so a host-made nvs_keys image is built but not registered: it must be
  pre-encrypted with the device's key and written by hand, or the chip makes the keys.
* Keys made on the chip (``keys: {source: chip}``): nothing is registered for the
  nvs_keys partition, so ``idf.py flash`` never overwrites them; ``nvs-keys-erase``
  erases it.

Pure: no files are read or written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from ..inputs.project import ResolvedProject
    from ..plan.security import SecurityPlan
    from .artifacts import Build

__all__ = [
    "IMAGE_KINDS",
    "MANIFEST_VERSION",
    "ImageRegistration",
    "ErasePartition",
    "BuildIntegration",
    "plan_build_integration",
]

#: The artifact kinds the build writes; ESP-IDF builds the partition table itself.
IMAGE_KINDS = ("nvs_image", "nvs_keys_image", "hmac_key")
#: Version of :meth:`BuildIntegration.to_json`'s layout.
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ImageRegistration:
    """One file the build writes and, when it has a partition, how it is flashed.

    ``file`` is an absolute path.  ``offset`` and ``size`` (bytes) are the partition's,
    None when the file is not flashed (an HMAC key, keys the application passes).
    ``always_plaintext``: written in plain text even under development-mode flash
    encryption.  ``encrypted``: ``idf.py encrypted-flash`` writes it through flash
    encryption.  ``registered``: it has ESP-IDF flash targets (``<partition>-flash``);
    ``flash_in_project``: ``idf.py flash`` writes it too.
    """

    kind: str
    file: Path
    partition: str | None = None
    offset: int | None = None
    size: int | None = None
    always_plaintext: bool = False
    encrypted: bool = False
    registered: bool = False
    flash_in_project: bool = False
    secret: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "file": str(self.file), "partition": self.partition,
                "offset": self.offset, "size": self.size,
                "always_plaintext": self.always_plaintext, "encrypted": self.encrypted,
                "registered": self.registered, "flash_in_project": self.flash_in_project,
                "secret": self.secret}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ImageRegistration":
        return cls(**{**data, "file": Path(data["file"])})


@dataclass(frozen=True)
class ErasePartition:
    """A partition ``idf.py nvs-keys-erase`` erases (offset and size in bytes)."""

    partition: str
    offset: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "offset": self.offset, "size": self.size}


@dataclass(frozen=True)
class BuildIntegration:
    """Everything the build system needs to know about one project and product.

    ``depends``: every file the build-time command reads (absolute, in a stable order).
    ``configure_depends``: the files that decide what the build writes or reads (the
    project file, the partitions file and the values files); a change re-runs the
    configure step.  ``partition_csv``: the CSV generated from partitions.yaml (None
    when the project names an ESP-IDF CSV itself).  ``errors``: why nothing can be built;
    the build fails with them, and ``idf.py build`` stops before it starts.
    """

    project_dir: Path
    product: str | None
    target: str | None = None
    flash_encryption_mode: str | None = None
    images: tuple[ImageRegistration, ...] = ()
    erase: tuple[ErasePartition, ...] = ()
    depends: tuple[Path, ...] = ()
    configure_depends: tuple[Path, ...] = ()
    partition_csv: Path | None = None
    messages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    active: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors

    def of_kind(self, *kinds: str) -> tuple[ImageRegistration, ...]:
        """The images of the given kinds, in build order."""
        return tuple(i for i in self.images if i.kind in kinds)

    def to_json(self) -> dict[str, Any]:
        """The manifest the idf.py extension reads (deterministic)."""
        return {
            "version": MANIFEST_VERSION,
            "active": self.active,
            "project_dir": str(self.project_dir),
            "product": self.product,
            "target": self.target,
            "flash_encryption_mode": self.flash_encryption_mode,
            "images": [i.to_json() for i in self.images],
            "erase": [e.to_json() for e in self.erase],
            "depends": [str(p) for p in self.depends],
            "configure_depends": [str(p) for p in self.configure_depends],
            "partition_csv": str(self.partition_csv) if self.partition_csv else None,
            "messages": list(self.messages),
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "BuildIntegration":
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {data.get('version')!r}, "
                             f"expected {MANIFEST_VERSION}")
        return cls(
            project_dir=Path(data["project_dir"]), product=data.get("product"),
            target=data.get("target"), flash_encryption_mode=data.get("flash_encryption_mode"),
            images=tuple(ImageRegistration.from_json(i) for i in data.get("images", ())),
            erase=tuple(ErasePartition(**e) for e in data.get("erase", ())),
            depends=tuple(Path(p) for p in data.get("depends", ())),
            configure_depends=tuple(Path(p) for p in data.get("configure_depends", ())),
            partition_csv=Path(data["partition_csv"]) if data.get("partition_csv") else None,
            messages=tuple(data.get("messages", ())), warnings=tuple(data.get("warnings", ())),
            errors=tuple(data.get("errors", ())), active=data.get("active", True))


def _hex(value: int | None) -> str:
    return f"0x{value:x}" if value is not None else "-"


@dataclass
class _Collector:
    images: list[ImageRegistration] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _register(plan: "SecurityPlan", resolved: "ResolvedProject", out_dir: Path,
              kind: str, name: str, partition: str | None, secret: bool, note: str,
              acc: _Collector) -> None:
    """Decide how one built artifact is flashed, and say so."""
    part = resolved.table.find(partition) if partition else None
    path = out_dir / name
    base = dict(kind=kind, file=path, partition=partition, secret=secret,
                offset=part.offset if part else None, size=part.size if part else None)
    mode = plan.flash_encryption_mode
    if kind == "nvs_image":
        # ESP-IDF refuses ALWAYS_PLAINTEXT for a partition flagged `encrypted` (allowed
        # for NVS only with NVS_COMPATIBLE_PRE_V4_3_ENCRYPTION_FLAG); its type/subtype rule
        # writes an NVS partition in plain text anyway.
        acc.images.append(ImageRegistration(**base, always_plaintext=not (part and part.encrypted),
                                            registered=True, flash_in_project=True))
        acc.messages.append(
            f"{name}: NVS data for partition {partition} at {_hex(base['offset'])} ({note}), "
            f"written as is (never through flash encryption) by `idf.py flash` and "
            f"`idf.py nvs-flash`")
    elif kind == "nvs_keys_image" and part is not None:
        if mode == "release":
            acc.images.append(ImageRegistration(**base))
            acc.messages.append(
                f"{name}: release-mode flash encryption: the nvs_keys image for {partition} at "
                f"{_hex(part.offset)} is built but not flashed: once the device has booted it "
                f"takes the key partition only pre-encrypted with its flash-encryption key "
                f"(espsecure encrypt-flash-data, then esptool write-flash), or use keys: "
                f"{{source: chip}} so the chip makes its own keys")
        elif mode == "development":
            acc.images.append(ImageRegistration(**base, encrypted=True, registered=True,
                                                flash_in_project=True))
            acc.messages.append(
                f"{name}: development-mode flash encryption: `idf.py encrypted-flash` and "
                f"`idf.py nvs-keys-flash` write the nvs_keys image for {partition} at "
                f"{_hex(part.offset)} encrypted. `idf.py flash` writes it in plain text, which is "
                f"right only before the first boot (the bootloader then encrypts it in place)")
        else:
            acc.images.append(ImageRegistration(**base, registered=True, flash_in_project=True))
            acc.messages.append(f"{name}: nvs_keys image for {partition} at {_hex(part.offset)}, "
                                f"written in plain text by `idf.py flash`")
    elif kind == "nvs_keys_image":
        acc.images.append(ImageRegistration(**base))
        acc.messages.append(f"{name}: NVS keys the application passes to nvs_flash_secure_init() "
                            f"(not flashed)")
    else:  # hmac_key
        acc.images.append(ImageRegistration(**base))
        acc.messages.append(f"{name}: {note or 'HMAC key'} (not flashed)")


def plan_build_integration(resolved: "ResolvedProject", plan: "SecurityPlan",
                           build: "Build | None", *, out_dir: Path,
                           sdkconfig: Path | None = None,
                           errors: tuple[str, ...] = ()) -> BuildIntegration:
    """How ESP-IDF's build handles ``resolved`` under ``plan``.

    ``build`` is :func:`~.artifacts.build_artifacts`' result (None when it failed, with
    the reason in ``errors``); ``out_dir`` is where the build writes the images;
    ``sdkconfig`` is the configuration file the build-time command reads.
    """
    project = resolved.project
    yaml_files: dict[Path, None] = {project.file: None, project.partitions_file: None}
    for vals in resolved.values.values():
        yaml_files.update(dict.fromkeys(vals.files))
    depends: dict[Path, None] = dict.fromkeys(resolved.inputs)
    for spec in [resolved.master_secret] + [k.master_secret for k in resolved.keys.values()]:
        if spec is not None and spec.file is not None:
            depends.setdefault(spec.file if spec.file.is_absolute() else project.root / spec.file)
    if sdkconfig is not None:
        depends.setdefault(Path(sdkconfig))

    all_errors = tuple(f"[{d.code}] {d.message}" for d in plan.errors) + tuple(errors)
    warnings = tuple(f"[{d.code}] {d.message}" for d in plan.diagnostics
                     if d.severity == "warning")
    acc = _Collector()
    if build is not None and not all_errors:
        for art in build.artifacts:
            if art.kind in IMAGE_KINDS:
                _register(plan, resolved, out_dir, art.kind, art.name, art.partition,
                          art.secret, art.note, acc)
        acc.messages.extend(build.notes)
    erase = []
    for part in plan.nvs_partitions:
        if part.key_source == "nvs_keys_chip" and plan.keys_partition:
            keys_name = resolved.nvs_keys_pairs.get(part.name) or plan.keys_partition
            keys = resolved.table.find(keys_name)
            if keys is not None and all(e.partition != keys.name for e in erase):
                erase.append(ErasePartition(keys.name, keys.offset, keys.size))
                acc.messages.append(
                    f"{keys.name} at {_hex(keys.offset)}: the chip makes its keys at first "
                    f"boot, so "
                    f"the build writes nothing there and `idf.py flash` leaves it alone "
                    f"(`idf.py nvs-keys-erase` erases it)")
    if plan.target == "linux":
        acc.messages.append("linux host target: the images are preloaded into the emulated flash "
                            "(linux_flash_data.txt). NVS encryption is not available there, so "
                            "the NVS data is plain text")
    generated = project.partition_csv if project.partitions_file.suffix.lower() in (
        ".yaml", ".yml") else None
    return BuildIntegration(
        project_dir=project.root, product=resolved.product, target=plan.target,
        flash_encryption_mode=plan.flash_encryption_mode,
        images=tuple(acc.images) if not all_errors else (), erase=tuple(erase),
        depends=tuple(depends), configure_depends=tuple(yaml_files),
        partition_csv=generated, messages=tuple(acc.messages), warnings=warnings,
        errors=all_errors)
