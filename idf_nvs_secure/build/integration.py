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

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..config.idf_versions import LINUX_PRELOAD, parse_idf_version
from ..words import FlashEncryptionMode, KeyProvider, OutputKind, Severity

if TYPE_CHECKING:  # pragma: no cover
    # Annotations only: reading a manifest (idf.py's check, on every build) must not load
    # the plan and its inputs.
    from ..plan.model import SecurityPlan
    from ..plan.outputs import PlannedOutput
    from ..plan.project_plan import ProjectPlan

__all__ = [
    "IMAGE_KINDS",
    "MANIFEST_VERSION",
    "ImageRegistration",
    "ErasePartition",
    "BuildIntegration",
    "plan_build_integration",
]

#: The output kinds the build writes; ESP-IDF builds the partition table itself.
IMAGE_KINDS = (OutputKind.NVS_IMAGE, OutputKind.NVS_KEYS_IMAGE, OutputKind.HMAC_KEY)
#: Version of :meth:`BuildIntegration.to_json`'s layout.
MANIFEST_VERSION = 2


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
    #: Environment variables the outputs read (names only): the stamp step watches them.
    env: tuple[str, ...] = ()
    #: The output plan's JSON (None when the plan has errors).
    outputs: Mapping[str, Any] | None = None
    #: Environment variables values read (names only): the build fails while one is unset.
    value_env: tuple[str, ...] = ()
    #: SHA-256 (hex) of each file the configure step read to decide this (the
    #: ``configure_depends`` and the sdkconfig), by absolute path; the configure step fills
    #: it in, so that idf.py's check can tell whether the manifest still describes the
    #: project without evaluating the plan again.  None: not recorded.
    input_digests: Mapping[str, str] | None = None

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
            "env": list(self.env),
            "value_env": list(self.value_env),
            "outputs": self.outputs,
            "input_digests": dict(self.input_digests) if self.input_digests is not None
            else None,
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
            errors=tuple(data.get("errors", ())), active=data.get("active", True),
            env=tuple(data.get("env", ())), outputs=data.get("outputs"),
            value_env=tuple(data.get("value_env", ())),
            input_digests=data.get("input_digests"))


def _hex(value: int | None) -> str:
    return f"0x{value:x}" if value is not None else "-"


def _register(plan: SecurityPlan, out: PlannedOutput, path: Path,
              images: list[ImageRegistration], messages: list[str]) -> None:
    """Decide how one planned output is flashed, and say so."""
    base = dict(kind=out.kind.value, file=path, partition=out.partition, secret=out.secret,
                offset=out.offset, size=out.size)
    mode = plan.flash_encryption_mode
    name = out.path
    part = plan.table.find(out.partition) if plan.table is not None and out.partition else None
    if out.kind == OutputKind.NVS_IMAGE:
        # ESP-IDF refuses ALWAYS_PLAINTEXT for a partition flagged `encrypted` (allowed
        # for NVS only with NVS_COMPATIBLE_PRE_V4_3_ENCRYPTION_FLAG); its type/subtype rule
        # writes an NVS partition in plain text anyway.
        images.append(ImageRegistration(**base, always_plaintext=not (part and part.encrypted),
                                        registered=True, flash_in_project=True))
        how = "XTS-encrypted" if out.keys else "plain"
        messages.append(
            f"{name}: NVS data for partition {out.partition} at {_hex(out.offset)} ({how}), "
            f"written as is (never through flash encryption) by `idf.py flash` and "
            f"`idf.py nvs-flash`")
    elif out.kind == OutputKind.NVS_KEYS_IMAGE and out.partition is not None:
        if mode == FlashEncryptionMode.RELEASE:
            images.append(ImageRegistration(**base))
            messages.append(
                f"{name}: release-mode flash encryption: the nvs_keys image for {out.partition} "
                f"at {_hex(out.offset)} is built but not flashed: once the device has booted it "
                f"takes the key partition only pre-encrypted with its flash-encryption key "
                f"(espsecure encrypt-flash-data, then esptool write-flash), or use keys: "
                f"{{source: chip}} so the chip makes its own keys")
        elif mode == FlashEncryptionMode.DEVELOPMENT:
            images.append(ImageRegistration(**base, encrypted=True, registered=True,
                                            flash_in_project=True))
            messages.append(
                f"{name}: development-mode flash encryption: `idf.py encrypted-flash` and "
                f"`idf.py nvs-keys-flash` write the nvs_keys image for {out.partition} at "
                f"{_hex(out.offset)} encrypted. `idf.py flash` writes it in plain text, which is "
                f"right only before the first boot (the bootloader then encrypts it in place)")
        else:
            images.append(ImageRegistration(**base, registered=True, flash_in_project=True))
            messages.append(f"{name}: nvs_keys image for {out.partition} at "
                            f"{_hex(out.offset)}, written in plain text by `idf.py flash`")
    elif out.kind == OutputKind.NVS_KEYS_IMAGE:
        images.append(ImageRegistration(**base))
        messages.append(f"{name}: NVS keys the application passes to nvs_flash_secure_init() "
                        f"(not flashed)")
    else:  # the HMAC key
        images.append(ImageRegistration(**base))
        block = plan.hmac_efuse_key_id
        messages.append(f"{name}: HMAC key: burn it into eFuse key block {block} with purpose "
                        f"HMAC_UP before the first boot (not flashed)")


def _linux_preload(plan: SecurityPlan, images: list[ImageRegistration]) -> list[str]:
    """What happens to the images on the linux target, for the firmware's ESP-IDF: only
    v6.1+ has esp_partition_register_target() (LINUX_PRELOAD).  Unknown: the CMake
    module tells from the ESP-IDF it runs in."""
    if not images or plan.idf_version is None:
        return []
    version = parse_idf_version(plan.idf_version)
    if LINUX_PRELOAD.available_in(version):
        return [f"ESP-IDF {version} preloads the images into the linux target's emulated "
                "flash when the app starts (esp_partition_register_target): the app reads the "
                "values"]
    return [f"ESP-IDF {version} cannot preload images into the linux target's emulated flash "
            f"(esp_partition_register_target, {LINUX_PRELOAD.since_text}+): the images are "
            "built, and the app starts with an empty NVS"]


def plan_build_integration(planned: ProjectPlan, *, out_dir: Path,
                           sdkconfig: Path | None = None,
                           errors: tuple[str, ...] = ()) -> BuildIntegration:
    """How ESP-IDF's build handles ``planned`` (its output plan decides every file).

    ``out_dir`` is where the build step writes the images; ``sdkconfig`` the
    configuration file it reads.  Nothing is built here."""
    resolved, plan, outputs = planned.resolved, planned.security, planned.outputs
    project = resolved.project
    configure: dict[Path, None] = {project.file: None, project.partitions_file: None}
    depends: dict[Path, None] = dict.fromkeys(configure)
    depends.update(dict.fromkeys(outputs.input_files))
    if sdkconfig is not None:
        depends.setdefault(Path(sdkconfig))
    all_errors = tuple(f"[{d.code}] {d.message}" for d in plan.errors) + tuple(errors)
    warnings = tuple(f"[{d.code}] {d.message}" for d in plan.diagnostics
                     if d.severity == Severity.WARNING)
    images: list[ImageRegistration] = []
    messages: list[str] = []
    if not all_errors:
        for out in outputs.device_outputs:
            _register(plan, out, out_dir / out.path, images, messages)
    unset = resolved.unset_env
    if unset:
        messages.append(f"the build needs {', '.join(unset)} set (values read "
                        f"{'them' if len(unset) > 1 else 'it'}); the images are made once "
                        f"{'they are' if len(unset) > 1 else 'it is'}")
    erase = []
    for part in plan.nvs_partitions:
        if part.key_source == KeyProvider.CHIP_NVS_KEYS and plan.keys_partition:
            keys_name = resolved.nvs_keys_pairs.get(part.name) or plan.keys_partition
            keys = resolved.table.find(keys_name)
            if keys is not None and all(e.partition != keys.name for e in erase):
                erase.append(ErasePartition(keys.name, keys.offset, keys.size))
                messages.append(
                    f"{keys.name} at {_hex(keys.offset)}: the chip makes its keys at first "
                    f"boot, so the build writes nothing there and `idf.py flash` leaves it "
                    f"alone (`idf.py nvs-keys-erase` erases it)")
    if plan.target == "linux":
        messages.append("linux host target: NVS encryption is not available there, so the "
                        "NVS data is plain text")
        messages.extend(_linux_preload(plan, images))
    generated = project.partition_csv if project.partitions_file.suffix.lower() in (
        ".yaml", ".yml") else None
    return BuildIntegration(
        project_dir=project.root, product=resolved.product, target=plan.target,
        flash_encryption_mode=plan.flash_encryption_mode,
        images=tuple(images), erase=tuple(erase), depends=tuple(depends),
        configure_depends=tuple(configure), partition_csv=generated,
        messages=tuple(messages), warnings=warnings, errors=all_errors,
        env=outputs.env_vars, outputs=outputs.to_json() if not all_errors else None,
        value_env=tuple(dict.fromkeys(ref.name for out in outputs.outputs
                                      for ref in out.inputs if ref.role == "env")))
