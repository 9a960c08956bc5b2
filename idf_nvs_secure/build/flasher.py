"""What ESP-IDF's build leaves for flashing, read and written in ESP-IDF's own formats.

``flasher_args.json`` follows components/esptool_py/flasher_args.json.in: the
write-flash arguments, ``flash_settings``, ``flash_files`` (offset -> file), one section
per image (``{"offset": "0x1000", "file": ..., "encrypted": "true"|"false"}``) and
``extra_esptool_args``.  ``flash_args`` and ``encrypted_flash_args`` follow
esptool_py's project_include.cmake (``esptool_py_flash_target``): the write-flash
sub-arguments on the first line, then one ``offset file`` line per image, with
``--encrypt-files`` before the images written through flash encryption.

:func:`read_build_outputs` is the only function here that reads files: the firmware
images a build directory holds, found through its flasher_args.json (or, for older
builds, project_description.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

from ..errors import InputError
from ..formats.partition_table import APP_TYPE, DATA_TYPE, PartitionTable
from ..fsutil import read_input_bytes, read_input_text

__all__ = [
    "FlashSettings",
    "FlashImage",
    "FirmwareImage",
    "BuildOutputs",
    "BOOTLOADER_OFFSETS",
    "flash_settings",
    "read_build_outputs",
    "format_flasher_args",
    "format_flash_args",
    "format_encrypted_flash_args",
]

#: ``CONFIG_BOOTLOADER_OFFSET_IN_FLASH`` (= ``ESP_ROM_BOOTLOADER_OFFSET_FLASH``,
#: components/esp_rom/<chip>/Kconfig.soc_caps.in); chips not listed use 0x0.
BOOTLOADER_OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32c5": 0x2000, "esp32p4": 0x2000}
#: The default of ``ESPTOOLPY_FLASHFREQ`` (components/spi_flash/<chip>/Kconfig.flash_freq,
#: mapped through esptool_py's Kconfig.projbuild); chips not listed use 80m.
_DEFAULT_FLASH_FREQ = {"esp32": "40m", "esp32c2": "60m", "esp32h2": "48m"}
_OTA_SUBTYPE = 0x00


@dataclass(frozen=True)
class FlashSettings:
    """How esptool talks to the chip and what it writes into image headers."""

    chip: str
    flash_mode: str = "dio"
    flash_freq: str = "40m"
    flash_size: str = "2MB"
    before: str = "default-reset"
    after: str = "hard-reset"
    stub: bool = True

    @property
    def write_flash_args(self) -> list[str]:
        """The write-flash arguments, in flasher_args.json.in's order."""
        return ["--flash-mode", self.flash_mode, "--flash-size", self.flash_size,
                "--flash-freq", self.flash_freq]

    @property
    def sub_args(self) -> str:
        """``FLASH_SUB_ARGS`` of esptool_py (the first line of flash_args)."""
        return (f"--flash-mode {self.flash_mode} --flash-freq {self.flash_freq} "
                f"--flash-size {self.flash_size}")


@dataclass(frozen=True)
class FlashImage:
    """One file to write: ``section`` names it in flasher_args.json, ``file`` is its
    path in the bundle (POSIX, relative), ``offset`` its flash offset in bytes, and
    ``encrypted`` says it is written through flash encryption (``--encrypt-files``)."""

    section: str
    file: str
    offset: int
    encrypted: bool = False


@dataclass(frozen=True)
class FirmwareImage:
    """A binary from the build directory: ``name`` is its path relative to it (POSIX)."""

    section: str
    name: str
    offset: int
    data: bytes


@dataclass(frozen=True)
class BuildOutputs:
    """The firmware images of a build and the files they were found through.

    ``flasher_args`` is the build's flasher_args.json (its settings win over sdkconfig's
    defaults); ``inputs`` maps each file read (relative to the build directory) to its
    bytes, for the manifest."""

    images: tuple[FirmwareImage, ...] = ()
    flasher_args: Mapping[str, Any] | None = None
    inputs: Mapping[str, bytes] | None = None
    note: str | None = None


def flash_settings(target: str, symbols: Mapping[str, Any], *, flash_size: str | None,
                   secure: bool, build: Mapping[str, Any] | None = None) -> FlashSettings:
    """The flash settings of a release: the build's flasher_args.json when there is one,
    else sdkconfig's values (``symbols``) with ESP-IDF's defaults for ``target``.

    ``secure`` (flash encryption or secure boot) makes ``after`` ``no-reset``, as ESP-IDF's
    tools/cmake/flash_targets.cmake does.  Raises :class:`InputError` when the build was
    made for another chip."""
    if build:
        settings = build.get("flash_settings") or {}
        extra = build.get("extra_esptool_args") or {}
        chip = extra.get("chip", target)
        if chip != target:
            raise InputError(f"the build directory holds a build for {chip}, but sdkconfig "
                             f"selects {target}", file="flasher_args.json",
                             hint="rebuild with idf.py build, or pass --build-dir")
        return FlashSettings(
            chip=target, flash_mode=str(settings.get("flash_mode", "dio")),
            flash_freq=str(settings.get("flash_freq", _DEFAULT_FLASH_FREQ.get(target, "80m"))),
            flash_size=str(settings.get("flash_size", flash_size or "2MB")),
            before=str(extra.get("before", "default-reset")),
            after=str(extra.get("after", "no-reset" if secure else "hard-reset")),
            stub=bool(extra.get("stub", True)))

    def text(name: str, default: str) -> str:
        value = symbols.get(name)
        return str(value).replace("_", "-") if isinstance(value, str) and value else default

    return FlashSettings(
        chip=target, flash_mode=text("ESPTOOLPY_FLASHMODE", "dio"),
        flash_freq=text("ESPTOOLPY_FLASHFREQ", _DEFAULT_FLASH_FREQ.get(target, "80m")),
        flash_size=flash_size or text("ESPTOOLPY_FLASHSIZE", "2MB"),
        before=text("ESPTOOLPY_BEFORE", "default-reset"),
        after="no-reset" if secure else text("ESPTOOLPY_AFTER", "hard-reset"),
        stub=not symbols.get("ESPTOOLPY_NO_STUB", False))


def _relative(build_dir: Path, name: str, where: str) -> str:
    """``name`` (as a build file lists it) relative to ``build_dir``, POSIX; it must lie
    inside the build directory."""
    path = Path(name)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(build_dir.resolve())
        except ValueError:
            raise InputError(f"{where} names {name}, outside the build directory",
                             file=where) from None
    rel = PurePosixPath(path.as_posix())
    if ".." in rel.parts or not rel.parts:
        raise InputError(f"{where} names {name}, outside the build directory", file=where)
    return str(rel)


def _read_json(path: Path, display: str) -> dict:
    try:
        data = json.loads(read_input_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=display, line=exc.lineno,
                         col=exc.colno) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", file=display)
    return data


def _image(build_dir: Path, section: str, name: str, offset: int, where: str) -> FirmwareImage:
    rel = _relative(build_dir, name, where)
    path = build_dir / rel
    if not path.is_file():
        raise InputError(f"{where} lists {rel}, which does not exist", file=where,
                         hint="run idf.py build first")
    return FirmwareImage(section, rel, offset, read_input_bytes(path))


def _offset(value: Any, where: str) -> int:
    try:
        return int(str(value), 0)
    except ValueError:
        raise InputError(f"{where}: offset {value!r} is not a number", file=where) from None


def _from_flasher_args(build_dir: Path, data: dict) -> list[FirmwareImage]:
    where = "flasher_args.json"
    images: dict[int, FirmwareImage] = {}
    for section, item in data.items():
        if isinstance(item, dict) and "offset" in item and "file" in item:
            offset = _offset(item["offset"], where)
            images[offset] = _image(build_dir, section, item["file"], offset, where)
    for offset_text, name in (data.get("flash_files") or {}).items():
        offset = _offset(offset_text, where)
        if offset not in images:  # older builds: flash_files without a section
            images[offset] = _image(build_dir, PurePosixPath(name).stem, name, offset, where)
    return [images[o] for o in sorted(images)]


def _boot_partition_offset(table: PartitionTable) -> int | None:
    """Where ESP-IDF flashes the app: the factory partition, else the first app one
    (``gen_esp32part.py --partition-boot-default``)."""
    apps = table.of_type(APP_TYPE)
    if not apps:
        return None
    factory = [p for p in apps if p.subtype == 0x00]
    return (factory or list(apps))[0].offset


def _from_description(build_dir: Path, data: dict, table: PartitionTable,
                      target: str) -> list[FirmwareImage]:
    where = "project_description.json"
    images = []
    bootloader = build_dir / "bootloader" / "bootloader.bin"
    if bootloader.is_file():
        images.append(FirmwareImage("bootloader", "bootloader/bootloader.bin",
                                    BOOTLOADER_OFFSETS.get(target, 0x0),
                                    read_input_bytes(bootloader)))
    app = data.get("app_bin")
    offset = _boot_partition_offset(table)
    if app and offset is not None and (build_dir / _relative(build_dir, app, where)).is_file():
        images.append(_image(build_dir, "app", app, offset, where))
    otadata = table.of_type(DATA_TYPE, _OTA_SUBTYPE)
    if otadata and (build_dir / "ota_data_initial.bin").is_file():
        images.append(_image(build_dir, "otadata", "ota_data_initial.bin", otadata[0].offset,
                             where))
    return sorted(images, key=lambda i: i.offset)


def read_build_outputs(build_dir: Path, *, table: PartitionTable, target: str) -> BuildOutputs:
    """The firmware images in ``build_dir``: those its flasher_args.json lists, else the
    bootloader, app and initial OTA data that project_description.json points to, else
    none (with a note).  Raises :class:`InputError` for a listed file that is missing."""
    build_dir = Path(build_dir)
    args_path = build_dir / "flasher_args.json"
    if args_path.is_file():
        data = _read_json(args_path, "flasher_args.json")
        return BuildOutputs(tuple(_from_flasher_args(build_dir, data)), data,
                            {"flasher_args.json": read_input_bytes(args_path)})
    desc_path = build_dir / "project_description.json"
    if desc_path.is_file():
        data = _read_json(desc_path, "project_description.json")
        return BuildOutputs(tuple(_from_description(build_dir, data, table, target)), None,
                            {"project_description.json": read_input_bytes(desc_path)})
    return BuildOutputs(note="no firmware: the build directory has no flasher_args.json "
                             "(run idf.py build, or pass --build-dir)")


def format_flasher_args(images: Sequence[FlashImage], settings: FlashSettings) -> str:
    """flasher_args.json as ESP-IDF writes it (images in flash order)."""
    ordered = sorted(images, key=lambda i: i.offset)
    data: dict[str, Any] = {
        "write_flash_args": settings.write_flash_args,
        "flash_settings": {"flash_mode": settings.flash_mode, "flash_size": settings.flash_size,
                           "flash_freq": settings.flash_freq},
        "flash_files": {f"{i.offset:#x}": i.file for i in ordered},
    }
    for image in ordered:
        data[image.section] = {"offset": f"{image.offset:#x}", "file": image.file,
                               "encrypted": "true" if image.encrypted else "false"}
    data["extra_esptool_args"] = {"after": settings.after, "before": settings.before,
                                  "stub": settings.stub, "chip": settings.chip}
    return json.dumps(data, indent=4) + "\n"


def format_flash_args(images: Sequence[FlashImage], settings: FlashSettings) -> str:
    """flash_args: ``esptool write-flash @flash_args`` from the bundle directory."""
    lines = [settings.sub_args] + [f"{i.offset:#x} {i.file}"
                                   for i in sorted(images, key=lambda i: i.offset)]
    return "\n".join(lines) + "\n"


def format_encrypted_flash_args(images: Sequence[FlashImage], settings: FlashSettings) -> str:
    """encrypted_flash_args: as flash_args, with the images written through flash
    encryption after ``--encrypt-files`` (or ``--encrypt`` when all are)."""
    ordered = sorted(images, key=lambda i: i.offset)
    plain = [f"{i.offset:#x} {i.file}" for i in ordered if not i.encrypted]
    crypt = [f"{i.offset:#x} {i.file}" for i in ordered if i.encrypted]
    if not plain:
        return "\n".join([settings.sub_args + " --encrypt"] + crypt) + "\n"
    return "\n".join([settings.sub_args] + plain + ["--encrypt-files"] + crypt) + "\n"
