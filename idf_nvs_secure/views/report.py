"""The project report: one self-contained HTML page about a project's NVS security.

:func:`build_report` gathers what the page shows from a resolved project and its
security plan: the plan's settings, its diagnostics, the flash map (inline SVG), and for
each NVS partition its values (secrets masked unless asked) and fill level, measured by
building the partition's plaintext image and reading its pages back.
:func:`render_report_html` renders ``templates/report.html.j2``.  The page loads
nothing from the network: CSS and SVG are inline, no fonts or scripts.

Pure: no files are read or written here (the CLI writes the page atomically).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import NvsSecureError
from ..plan.outputs import plan_outputs
from ..formats.nvs_image import build_nvs_image, usable_pages
from ..formats.nvs_layout import ENTRIES_PER_PAGE, PAGE_SIZE
from ..formats.nvs_reader import parse_nvs_image
from ..formats.partition_table import PartitionTable, format_size
from ..inputs.project import unset_text
from .flashmap import FlashMap, layout_flash_map, render_flash_map_svg, template_environment
from .inspect import format_value

if TYPE_CHECKING:  # pragma: no cover
    from ..inputs.nvs_yaml import NvsValues
    from ..inputs.project import ResolvedProject
    from ..plan.security import SecurityPlan

__all__ = ["ValueRow", "FillLevel", "NvsPartitionReport", "Report", "build_report",
           "render_report_html", "MASK"]

#: What a masked secret shows instead of its value.
MASK = "•••••• (secret)"


@dataclass(frozen=True)
class ValueRow:
    """One value as the report shows it (``value`` is already masked when ``secret``)."""

    namespace: str
    key: str
    type: str
    value: str
    secret: bool
    masked: bool


@dataclass(frozen=True)
class FillLevel:
    """How full a partition would be: pages initialised and entries written, against
    what NVS may use (all pages but the one kept free for garbage collection)."""

    pages_used: int
    pages_usable: int
    pages_total: int
    entries_used: int
    entries_usable: int

    @property
    def percent(self) -> float:
        """Entries written as a percentage of the usable entries."""
        return 100.0 * self.entries_used / self.entries_usable if self.entries_usable else 0.0


@dataclass(frozen=True)
class NvsPartitionReport:
    """One NVS partition: where it is, how it is protected, its values and fill level.
    ``fill`` is None and ``error`` says why when the values do not build."""

    name: str
    offset: int
    size: int
    encrypted: bool
    key_source: str | None
    format_version: int
    rows: tuple[ValueRow, ...]
    fill: FillLevel | None
    error: str | None = None

    @property
    def size_text(self) -> str:
        """The size as ESP-IDF writes it (``24K``)."""
        return format_size(self.size)


@dataclass(frozen=True)
class Report:
    """Everything the page shows, ready to render."""

    title: str
    product: str | None
    settings: tuple[tuple[str, str], ...]
    diagnostics: tuple[Any, ...]
    notes: tuple[str, ...]
    flash_map_svg: str
    partitions: tuple[NvsPartitionReport, ...]
    show_secrets: bool
    version: str = __version__
    artifacts: tuple[Any, ...] = field(default_factory=tuple)
    #: Paths of the artifacts written through flash encryption (badged on the page).
    flash_encrypted: frozenset[str] = frozenset()


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _settings(plan: "SecurityPlan") -> tuple[tuple[str, str], ...]:
    rows = [
        ("Target", plan.target),
        ("NVS encryption", _yes_no(plan.nvs_encryption)),
        ("Scheme", plan.scheme or "none"),
    ]
    if plan.scheme == "hmac" and plan.hmac_efuse_key_id is not None:
        rows.append(("HMAC eFuse key block", f"KEY{plan.hmac_efuse_key_id}"))
    rows.append(("Flash encryption", _yes_no(plan.flash_encryption)
                 + (f" ({plan.flash_encryption_mode})" if plan.flash_encryption_mode else "")))
    if plan.flash_encryption_key:
        rows.append(("Flash encryption key", plan.flash_encryption_key))
    rows.append(("Flash size", plan.flash_size or "unknown"))
    table_file = plan.partition_table.get("file") if plan.partition_table else None
    if table_file:
        rows.append(("Partition table", str(table_file)))
    rows.append(("nvs_keys partition", plan.keys_partition or "none"))
    return tuple(rows)


def _rows(values: "NvsValues", show_secrets: bool) -> tuple[ValueRow, ...]:
    rows = []
    for namespace, entries in values.namespaces.items():
        for key, entry in entries.items():
            secret = (namespace, key) in values.secrets
            masked = secret and not show_secrets
            unset = values.unset_variable(namespace, key)
            shown = (unset_text(unset) if unset is not None else MASK if masked
                     else format_value(entry.type, entry.value, limit=64))
            rows.append(ValueRow(namespace, key, entry.type, shown, secret, masked))
    return tuple(rows)


def measure_fill(values: "NvsValues", size: int, version: int = 2) -> FillLevel:
    """Build the plaintext image of ``values`` in ``size`` bytes and count what it uses.

    Raises :class:`~.errors.CapacityError` (or another InputError) when they do not fit.
    """
    image = parse_nvs_image(build_nvs_image(values.entries, size, version=version))
    used = [p for p in image.pages if p.state != "UNINITIALIZED"]
    usable = usable_pages(size)
    return FillLevel(len(used), usable, size // PAGE_SIZE, sum(p.used for p in used),
                     usable * ENTRIES_PER_PAGE)


def _partition_report(name: str, resolved: "ResolvedProject", plan: "SecurityPlan | None",
                      show_secrets: bool) -> NvsPartitionReport:
    part = resolved.table.find(name)
    values = resolved.values[name]
    planned = plan.nvs_partition(name) if plan is not None else None
    version = resolved.format_versions.get(name, 2)
    try:
        fill, error = measure_fill(values, part.size, version), None
    except NvsSecureError as exc:
        fill, error = None, str(exc)
    return NvsPartitionReport(
        name=name, offset=part.offset, size=part.size,
        encrypted=bool(planned and planned.encrypted),
        key_source=planned.key_source.description if planned and planned.key_source else None,
        format_version=version, rows=_rows(values, show_secrets), fill=fill, error=error)


def layout_project_flash_map(resolved: "ResolvedProject", plan: "SecurityPlan | None", *,
                             table: PartitionTable | None = None,
                             flash_size: int | None = None,
                             title: str = "Flash map") -> FlashMap:
    """The flash map of a project's ``table`` (default: its own) with what ``plan`` says is
    encrypted: NVS partitions under NVS encryption, and with flash encryption on,
    everything the bootloader stores encrypted.  The report and ``partitions show`` of a
    project both draw this map."""
    table = table if table is not None else resolved.table
    nvs = {name: "NVS-encrypted" for name in resolved.values
           if plan is not None and table.find(name) is not None
           and (planned := plan.nvs_partition(name)) is not None and planned.encrypted}
    return layout_flash_map(table, flash_size=flash_size or resolved.flash_size,
                            nvs_encrypted=nvs,
                            flash_encryption=bool(plan and plan.flash_encryption),
                            title=title)


def build_report(resolved: "ResolvedProject", plan: "SecurityPlan | None", *,
                 show_secrets: bool = False, title: str | None = None) -> Report:
    """The report of ``resolved`` (values, table) under ``plan`` (None: no sdkconfig
    facts; the page then says so).  Secrets are masked unless ``show_secrets``."""
    table: PartitionTable = resolved.table
    partitions = tuple(_partition_report(name, resolved, plan, show_secrets)
                       for name in resolved.values if table.find(name) is not None)
    flash_map = layout_project_flash_map(resolved, plan, title="Flash map")
    name = title or f"NVS security report: {resolved.project.root.name}"
    artifacts = plan_outputs(plan, resolved).outputs if plan is not None else ()
    from ..build.flash_encrypt import stored_encrypted

    through_fe = frozenset(
        a.path for a in artifacts if a.flash_encrypted or (
            plan is not None and plan.flash_encryption and a.offset is not None
            and stored_encrypted(a.offset, table)))
    return Report(
        title=name, product=resolved.product,
        settings=_settings(plan) if plan is not None else (),
        diagnostics=tuple(plan.diagnostics) if plan is not None else (),
        notes=(tuple(plan.notes) if plan is not None else ()) + resolved.unset_notes,
        flash_map_svg=render_flash_map_svg(flash_map, standalone=False),
        partitions=partitions, show_secrets=show_secrets,
        artifacts=artifacts, flash_encrypted=through_fe)


def render_report_html(report: Report) -> str:
    """The HTML page of ``report``: self-contained, no network resources."""
    from markupsafe import Markup

    return template_environment().get_template("report.html.j2").render(
        report=report, flash_map=Markup(report.flash_map_svg))
