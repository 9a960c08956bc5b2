"""Plans as text: what ``detect`` and ``idf.py nvs-secure-check`` print."""

from __future__ import annotations

from ..plan.model import SecurityPlan
from ..plan.outputs import OutputPlan, plan_outputs

__all__ = ["format_plan"]


def _hex(value: object) -> str:
    return f"{value:#x}" if isinstance(value, int) else "-"


def format_plan(plan: SecurityPlan, outputs: OutputPlan | None = None) -> str:
    """A readable, deterministic summary of ``plan`` and its ``outputs`` (what ``detect``
    prints)."""
    cfg = plan.config
    files = ", ".join(cfg.get("files", ())) or "none"
    lines = [
        f"target:            {plan.target} (from {cfg.get('target_source')})",
        f"configuration:     {cfg.get('kind')} [{files}]; Kconfig model: {cfg.get('model')}",
        f"ESP-IDF:           {plan.idf_version} (from {plan.idf_version_source})"
        if plan.idf_version else "ESP-IDF:           unknown (set IDF_PATH, or give --idf-version "
                                 "or idf_version: in nvs_secure.yaml)",
    ]
    if plan.flash_encryption:
        lines.append(f"flash encryption:  on, {plan.flash_encryption_mode} mode ({plan.flash_encryption_key})")
    else:
        lines.append("flash encryption:  off")
    if plan.nvs_encryption:
        scheme = plan.scheme
        if scheme == "hmac":
            scheme += f" (eFuse key id {plan.hmac_efuse_key_id})"
        lines.append(f"NVS encryption:    on, key protection scheme {scheme}")
    else:
        lines.append("NVS encryption:    off")
    table = plan.partition_table
    lines.append(f"partition table:   {table.get('file') or 'unknown'} at {_hex(table.get('offset'))}; "
                 f"flash size {plan.flash_size or '-'}")
    if plan.keys_partition:
        lines.append(f"keys partition:    {plan.keys_partition}")
    lines.append("NVS partitions:" if plan.nvs_partitions else "NVS partitions:    none known")
    for part in plan.nvs_partitions:
        state = (f"encrypted, keys: {part.key_source.description}"
                 if part.encrypted else "plain text")
        values = f", values from {part.values_file}" if part.values_file else ""
        lines.append(f"  {part.name:<16} {_hex(part.offset):>10} {_hex(part.size):>10}  {state}{values}")
    outputs = outputs if outputs is not None else plan_outputs(plan, None)
    files = outputs.outputs
    lines.append(f"outputs ({outputs.label}):" if files else "outputs:           none "
                 "(without nvs_secure.yaml, ESP-IDF builds the partition table itself)")
    for out in files:
        where = f" -> {out.partition} @ {_hex(out.offset)}" if out.partition else (
            f" @ {_hex(out.offset)}" if out.offset is not None else "")
        lines.append(f"  {out.path}: {out.kind.label}{where}")
        lines.append(f"      {out.description}"
                     + ("; written through flash encryption" if out.flash_encrypted else ""))
    for action in outputs.actions:
        lines.append(f"to do: {action}")
    if plan.diagnostics:
        lines.append("diagnostics:")
    for diag in plan.diagnostics:
        loc = f"{diag.file}:{diag.line}: " if diag.file and diag.line else f"{diag.file}: " if diag.file else ""
        lines.append(f"  {diag.severity}: [{diag.code}] {loc}{diag.message}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
