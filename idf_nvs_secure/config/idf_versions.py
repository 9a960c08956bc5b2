"""Which ESP-IDF the firmware is built with, and what that ESP-IDF's NVS code can read.

An image is only right if the firmware that opens it can read every entry in it: an
ESP-IDF v6.0.2 firmware that meets a float entry logs ``Invalid datatype 0x24`` and
erases it.  :data:`IDF_FEATURES` lists each NVS-related feature with the ESP-IDF
release that first has it and the commit that brought it, each checked in ESP-IDF's
own history (``git tag --contains <commit>``; release tags only, the ``-dev`` tags
that mark a branch point are not releases).  Backports to older release branches
would be other commits; none exists for these rows at v5.5.5, v6.0.2 or v6.1-beta1.

The version comes from (the first that applies):

1. what the user says: ``--idf-version`` or ``idf_version:`` in nvs_secure.yaml;
2. ``$IDF_PATH/tools/cmake/version.cmake`` (``IDF_VERSION_MAJOR/MINOR/PATCH``), the
   ESP-IDF that builds the firmware;
3. the line ESP-IDF's kconfgen writes at the top of sdkconfig,
   ``# Espressif IoT Development Framework (ESP-IDF) 6.0.2 Project Configuration``
   (esp-idf-kconfig's ``SDKCONFIG_HEADER_TEMPLATE``; the ESP-IDF that last wrote it).

Unknown is a valid answer: checks then warn instead of refusing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = [
    "IdfVersion",
    "IdfFeature",
    "IDF_FEATURES",
    "FLOAT_TYPES",
    "MULTIPAGE_BLOBS",
    "NVS_ENCRYPTION",
    "HMAC_SCHEME",
    "HMAC_DEFAULT_SCHEME",
    "READONLY_PARTITIONS",
    "SMALL_READONLY_NVS",
    "NVS_SEC_PROVIDER_ALWAYS",
    "LINUX_PRELOAD",
    "parse_idf_version",
    "version_from_idf_path",
    "version_from_sdkconfig",
    "find_idf_version",
]

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(-[0-9A-Za-z.-]+)?$")
_CMAKE_RE = re.compile(r"^\s*set\(IDF_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)\s*\)", re.M)
_HEADER_RE = re.compile(
    r"^# Espressif IoT Development Framework \(ESP-IDF\) (\S+) Project Configuration\s*$")


@dataclass(frozen=True, order=True)
class IdfVersion:
    """An ESP-IDF release, compared by (major, minor, patch).  A pre-release or a
    development snapshot (``6.1-beta1``, ``v6.1-dev-123-g...``) counts as its release:
    features are listed by the first release tag that has them."""

    major: int
    minor: int
    patch: int = 0
    suffix: str = ""

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}{self.suffix}"

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def at_least(self, other: IdfVersion) -> bool:
        return self.key >= other.key


def parse_idf_version(text: str, *, file: str | None = None, line: int | None = None) -> IdfVersion:
    """``"6.0.2"``, ``"v5.5"``, ``"v6.1-beta1"`` as an :class:`IdfVersion`; raises
    :class:`InputError` (located at ``file``/``line`` when given) otherwise."""
    match = _VERSION_RE.match(str(text).strip())
    if not match:
        raise InputError(f"{text!r} is not an ESP-IDF version", file=file, line=line,
                         hint="write it as ESP-IDF's tags do, e.g. 5.5.5, v6.0 or 6.1.0")
    major, minor, patch, suffix = match.groups()
    return IdfVersion(int(major), int(minor), int(patch or 0), suffix or "")


@dataclass(frozen=True)
class IdfFeature:
    """One thing an NVS image or its partition may need from the firmware's ESP-IDF.

    ``since`` is the first release that has it, ``first_tag`` the first tag of any kind
    (often a beta), ``commit`` and ``subject`` the ESP-IDF commit that brought it."""

    key: str
    what: str
    since: IdfVersion
    first_tag: str
    commit: str
    subject: str

    @property
    def since_text(self) -> str:
        return f"v{self.since.major}.{self.since.minor}"

    def available_in(self, version: IdfVersion) -> bool:
        return version.at_least(self.since)


def _f(key: str, what: str, since: str, first_tag: str, commit: str, subject: str) -> IdfFeature:
    return IdfFeature(key, what, parse_idf_version(since), first_tag, commit, subject)


#: float (0x24) and double (0x28) entries (nvs_flash/include/nvs.h NVS_TYPE_FLOAT/DOUBLE).
FLOAT_TYPES = _f("float-double", "float and double values", "6.1", "v6.1-beta1", "a5443bbb",
                 "feat(nvs_flash): Added support for storing flash and double types")
#: Page format version 2 (0xFE) with BLOB_IDX/BLOB_DATA multi-page blobs.  Earlier
#: firmware reads only version 1 (0xFF) pages.
MULTIPAGE_BLOBS = _f("format-version-2", "format version 2 pages (multi-page blobs)", "3.2",
                     "v3.2-beta1", "5a27a635",
                     "nvs-flash: Support for blobs larger than half of SPI Flash sector size")
#: XTS-AES encrypted NVS with keys from an nvs_keys partition.
NVS_ENCRYPTION = _f("nvs-encryption", "NVS encryption", "3.2", "v3.2-beta1", "48fccbf5",
                    "nvs_flash: Add support for nvs encryption")
#: Keys derived from an HMAC eFuse key (and the nvs_sec_provider component that
#: registers a scheme: commit 8efe2f86, same release).
HMAC_SCHEME = _f("hmac-scheme", "the HMAC key protection scheme (nvs_sec_provider)", "5.2",
                 "v5.2-beta1", "c1bed366",
                 "nvs_flash: Add support for HMAC-based NVS encryption keys protection scheme")
#: HMAC the default key protection scheme where the chip has it, and the scheme "None"
#: (v5.2 to v5.5: flash encryption by default, no "None").
HMAC_DEFAULT_SCHEME = _f("hmac-default-scheme",
                         "HMAC as the default key protection scheme, and the scheme None",
                         "6.0", "v6.0-beta1", "1ea0fc26",
                         "change(nvs_sec_provider): Make the HMAC-based NVS security scheme "
                         "default for supported SoCs")
#: The partition table's ``readonly`` flag (read-only NVS partitions).
READONLY_PARTITIONS = _f("readonly-flag", "read-only partitions", "5.2", "v5.2-beta1",
                         "ab1eb37f",
                         "feat(partition_table): Add read-only partition flag and functionality")
#: Read-only NVS partitions smaller than 0x3000 (no free page needed).
SMALL_READONLY_NVS = _f("small-readonly-nvs", "read-only NVS partitions smaller than 0x3000",
                        "5.5", "v5.5-beta1", "d8ebca36",
                        "feat(nvs): Allow read-only NVS partitions smaller than 0x3000")
#: nvs_flash requires nvs_sec_provider, so a MINIMAL_BUILD cannot leave it out.
NVS_SEC_PROVIDER_ALWAYS = _f("nvs-sec-provider-required",
                             "nvs_flash pulling nvs_sec_provider into every build", "6.0",
                             "v6.0-beta1", "f565fc24",
                             "change(nvs_flash): Add a private dependency of the "
                             "`nvs_sec_provider` component")
#: esp_partition_register_target(): images preloaded into the linux target's flash.
LINUX_PRELOAD = _f("linux-preload", "preloading images into the linux target's emulated flash",
                   "6.1", "v6.1-beta1", "749c446a",
                   "feat(esp_partition): Add esp_partition_flash_binary() CMake function")

IDF_FEATURES: tuple[IdfFeature, ...] = (
    MULTIPAGE_BLOBS, NVS_ENCRYPTION, HMAC_SCHEME, READONLY_PARTITIONS, SMALL_READONLY_NVS,
    NVS_SEC_PROVIDER_ALWAYS, HMAC_DEFAULT_SCHEME, FLOAT_TYPES, LINUX_PRELOAD,
)


# --- finding the version -------------------------------------------------------------


def version_from_idf_path(idf_path: Path) -> IdfVersion | None:
    """The version ``tools/cmake/version.cmake`` of an ESP-IDF checkout states."""
    try:
        text = (Path(idf_path) / "tools" / "cmake" / "version.cmake").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    parts = dict(_CMAKE_RE.findall(text))
    if not {"MAJOR", "MINOR", "PATCH"} <= parts.keys():
        return None
    return IdfVersion(int(parts["MAJOR"]), int(parts["MINOR"]), int(parts["PATCH"]))


def version_from_sdkconfig(text: str) -> IdfVersion | None:
    """The version in kconfgen's header line of an sdkconfig (first 10 lines)."""
    for line in text.splitlines()[:10]:
        match = _HEADER_RE.match(line.strip())
        if match:
            try:
                return parse_idf_version(match.group(1))
            except InputError:
                return None
    return None


def find_idf_version(env: Mapping[str, str], sdkconfig_text: str | None,
                     sdkconfig_name: str | None) -> tuple[IdfVersion | None, str | None, list[str]]:
    """(version, where it came from, notes) from ``IDF_PATH`` or the sdkconfig header.

    When both say something and disagree, IDF_PATH wins (it builds the firmware) and a
    note says so: the next build rewrites sdkconfig's header."""
    notes: list[str] = []
    from_path = version_from_idf_path(Path(env["IDF_PATH"])) if env.get("IDF_PATH") else None
    from_config = version_from_sdkconfig(sdkconfig_text) if sdkconfig_text else None
    if from_path is not None:
        if from_config is not None and from_config.key != from_path.key:
            notes.append(f"{sdkconfig_name} was written by ESP-IDF {from_config}; IDF_PATH is "
                         f"ESP-IDF {from_path}, which the next build uses")
        return from_path, "IDF_PATH (tools/cmake/version.cmake)", notes
    if from_config is not None:
        return from_config, f"{sdkconfig_name} (the ESP-IDF that wrote it)", notes
    return None, None, notes
