"""The files of one device of a batch: its NVS images (laid out once per value-length
layout, then refilled: :mod:`.formats.nvs_template`), its keys, and the flashing
arguments every device shares.

``flash_args`` and ``flasher_args.json`` follow ESP-IDF's (components/esptool_py/
project_include.cmake and flasher_args.json.in, v5.5 to v6.1): in a device's folder,
``esptool.py --chip CHIP write_flash @flash_args`` writes the device; the keys file goes
after ``--encrypt-files`` only when the plan writes it through flash encryption
(development mode), as ESP-IDF's ``encrypted_flash_args`` does.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..build.flasher import (
    FlashImage,
    format_encrypted_flash_args,
    format_flash_args,
    format_flasher_args,
)
from ..build.keys import key_material
from ..formats.nvs_image import build_nvs_image
from ..formats.nvs_keys import derive_nvs_keys_from_hmac, parse_nvs_keys
from ..formats.nvs_template import (
    NvsTemplate,
    encoded_length,
    fill_nvs_template,
    make_nvs_template,
)
from ..words import OutputKind
from .devices_csv import Column, device_entries, entry_layouts
from .jobs import BatchPlan

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.nvs_keys import NvsKeys

__all__ = ["ImageMaker", "DeviceFile", "device_outputs", "flash_support_files"]

#: ``(name, data, partition, offset, secret, flash_encrypted, nvs_encrypted)``:
#: ``flash_encrypted``: written through flash encryption when flashed;
#: ``nvs_encrypted``: an NVS image encrypted with NVS encryption (XTS), None for
#: files that are no NVS image.
DeviceFile = tuple


class ImageMaker:
    """Builds the NVS images of devices.  Images with the same value lengths share a
    layout, so after a few devices of one layout an :class:`~.formats.nvs_template.NvsTemplate`
    is made and refilled per device (checked once against ``build_nvs_image``)."""

    #: Devices of one layout built directly before a template is made for it.
    TEMPLATE_AFTER = 2
    _LIMIT = 256

    def __init__(self, batch: BatchPlan, columns: Sequence[Column]) -> None:
        self.batch, self.columns = batch, tuple(columns)
        self.layouts = entry_layouts(batch, self.columns)
        self._templates: dict[tuple, NvsTemplate] = {}
        self._seen: dict[tuple, int] = {}

    def image(self, index: int, values: Sequence[Any], keys: "NvsKeys | None") -> bytes:
        """The image of job ``index`` for a device's ``values`` (one per column)."""
        job = self.batch.jobs[index]
        template_entries, slots = self.layouts[index]
        own = [values[position] for _, position in slots]
        layout = (index, tuple(encoded_length(self.columns[p].type, v)
                               for (_, p), v in zip(slots, own)))
        template = self._templates.get(layout)
        if template is not None:
            return fill_nvs_template(template, own, keys=keys)
        entries = device_entries(template_entries, slots, self.columns, values)
        image = build_nvs_image(entries, job.size, version=job.version, keys=keys)
        seen = self._seen[layout] = self._seen.get(layout, 0) + 1
        if seen >= self.TEMPLATE_AFTER:
            template = make_nvs_template(entries, job.size, version=job.version,
                                         variable=[slot for slot, _ in slots])
            if fill_nvs_template(template, own, keys=keys) != image:  # pragma: no cover
                raise AssertionError("NVS template differs from build_nvs_image")
            if len(self._templates) >= self._LIMIT:
                self._templates.clear()
            self._templates[layout] = template
        return image


def device_outputs(batch: BatchPlan, maker: ImageMaker, device: str, values: Sequence[Any], *,
                   rng: Callable[[int], bytes] = secrets.token_bytes,
                   kept: Mapping[str, bytes] | None = None) -> list[DeviceFile]:
    """The files of one device (see :data:`DeviceFile`).

    ``kept``: key files of an earlier run (name -> bytes), reused instead of new random
    keys (key source ``generate``)."""
    kept = kept or {}
    files: list[tuple] = []
    made: dict[str, Any] = {}
    for index, job in enumerate(batch.jobs):
        keys = None
        key = job.keys
        if key is not None:
            keys = made.get(key.name)
            if keys is None:
                raw = key_material(key, master=batch.master, product=batch.product,
                                   device_id=device, rng=rng, kept=kept)
                keys = made[key.name] = (derive_nvs_keys_from_hmac(raw)
                                         if key.kind == OutputKind.HMAC_KEY else
                                         parse_nvs_keys(raw))
                files.append((key.name, raw, key.partition, key.offset, True,
                              job.keys_encrypted, None))
        if job.image:
            files.append((f"{job.name}.bin", maker.image(index, values, keys), job.name,
                          job.offset, False, False, keys is not None))
    return files


def flash_support_files(batch: BatchPlan) -> list[tuple[str, bytes]]:
    """``flash_args`` and ``flasher_args.json`` for a device's folder (the same for every
    device: names are relative to it); none when the plan has no flash settings."""
    if batch.flash is None:
        return []
    images: list[FlashImage] = []
    keys_seen: set[str] = set()
    for job in batch.jobs:
        key = job.keys
        if key is not None and key.name not in keys_seen and key.offset is not None:
            keys_seen.add(key.name)
            images.append(FlashImage(key.partition or key.name, key.name, key.offset,
                                     job.keys_encrypted))
        if job.image:
            images.append(FlashImage(job.name, f"{job.name}.bin", job.offset))
    if not images:
        return []
    args = (format_encrypted_flash_args if any(i.encrypted for i in images) else
            format_flash_args)(images, batch.flash)
    return [("flash_args", args.encode()),
            ("flasher_args.json", format_flasher_args(images, batch.flash).encode())]
