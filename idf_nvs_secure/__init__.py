"""idf_nvs_secure: declarative, reproducible NVS encryption for ESP-IDF projects.

The public API is what ``__all__`` lists; the command line, the idf.py extension and
users' scripts all call it.  Format functions are pure (bytes in, bytes out); only the
CLI and the adapters touch files and the terminal.  Example::

    from idf_nvs_secure import load_project, plan_for_project, build_artifacts

    resolved, plan = plan_for_project(load_project("my_project"), "pro")
    for artifact in build_artifacts(resolved, plan).artifacts:
        print(artifact.name, artifact.offset, len(artifact.data))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

#: Public name -> the module that defines it; loaded on first use (PEP 562), so that
#: ``python -m idf_nvs_secure cmake-dir`` and ``--help`` start without loading it all.
_EXPORTS = {
    "Build": ".build.artifacts",
    "BuiltArtifact": ".build.artifacts",
    "build_artifacts": ".build.artifacts",
    "build_outputs": ".build.artifacts",
    "ProjectPlan": ".plan.project_plan",
    "plan_for_project": ".plan.project_plan",
    "plan_project": ".plan.project_plan",
    "OutputPlan": ".plan.outputs",
    "PlannedOutput": ".plan.outputs",
    "plan_outputs": ".plan.outputs",
    "CapacityError": ".errors",
    "FormatError": ".errors",
    "InputError": ".errors",
    "KeyMaterialError": ".errors",
    "NvsSecureError": ".errors",
    "NvsEntry": ".formats.nvs_image",
    "build_nvs_image": ".formats.nvs_image",
    "validate_entry": ".formats.nvs_image",
    "NvsKeys": ".formats.nvs_keys",
    "build_nvs_keys": ".formats.nvs_keys",
    "derive_nvs_keys_from_hmac": ".formats.nvs_keys",
    "generate_nvs_keys": ".formats.nvs_keys",
    "parse_nvs_keys": ".formats.nvs_keys",
    "NvsImage": ".formats.nvs_reader",
    "image_to_json": ".formats.nvs_reader",
    "parse_nvs_image": ".formats.nvs_reader",
    "Partition": ".formats.partition_table",
    "PartitionTable": ".formats.partition_table",
    "build_partition_table": ".formats.partition_table",
    "parse_partition_table": ".formats.partition_table",
    "validate_partition_table": ".formats.partition_table",
    "find_name_warnings": ".formats.partition_table",
    "secure_boot_check": ".formats.partition_table",
    "derive_hmac_key": ".inputs.keysource",
    "derive_nvs_keys": ".inputs.keysource",
    "DERIVATION_VERSION": ".inputs.keysource",
    "parse_nvs_csv": ".inputs.nvs_csv",
    "NvsValues": ".inputs.nvs_yaml",
    "load_nvs_values": ".inputs.nvs_yaml",
    "format_partition_csv": ".inputs.partition_csv",
    "parse_partition_csv": ".inputs.partition_csv",
    "parse_partitions_yaml": ".inputs.partitions_yaml",
    "Project": ".inputs.project",
    "ResolvedProject": ".inputs.project",
    "load_project": ".inputs.project",
    "resolve_project": ".inputs.project",
    "PlanIntent": ".plan.security",
    "SecurityPlan": ".plan.security",
    "detect_plan": ".plan.security",
}


__all__ = [
    "__version__",
    # errors
    "NvsSecureError", "InputError", "FormatError", "KeyMaterialError", "CapacityError",
    # partition tables
    "Partition", "PartitionTable", "build_partition_table", "parse_partition_table",
    "validate_partition_table", "find_name_warnings", "secure_boot_check",
    "parse_partition_csv", "format_partition_csv",
    "parse_partitions_yaml",
    # NVS images
    "NvsEntry", "build_nvs_image", "validate_entry", "NvsImage", "parse_nvs_image",
    "image_to_json", "parse_nvs_csv", "NvsValues", "load_nvs_values",
    # keys
    "NvsKeys", "build_nvs_keys", "parse_nvs_keys", "generate_nvs_keys",
    "derive_nvs_keys_from_hmac", "derive_nvs_keys", "derive_hmac_key", "DERIVATION_VERSION",
    # projects, plans, builds
    "Project", "ResolvedProject", "load_project", "resolve_project",
    "SecurityPlan", "PlanIntent", "detect_plan",
    "Build", "BuiltArtifact", "plan_for_project", "build_artifacts",
    "ProjectPlan", "plan_project", "OutputPlan", "PlannedOutput", "plan_outputs", "build_outputs",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'idf_nvs_secure' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .build.artifacts import Build  # noqa: F401
    from .build.artifacts import BuiltArtifact  # noqa: F401
    from .build.artifacts import build_artifacts  # noqa: F401
    from .build.artifacts import build_outputs  # noqa: F401
    from .plan.project_plan import ProjectPlan  # noqa: F401
    from .plan.project_plan import plan_for_project  # noqa: F401
    from .plan.project_plan import plan_project  # noqa: F401
    from .plan.outputs import OutputPlan  # noqa: F401
    from .plan.outputs import PlannedOutput  # noqa: F401
    from .plan.outputs import plan_outputs  # noqa: F401
    from .errors import CapacityError  # noqa: F401
    from .errors import FormatError  # noqa: F401
    from .errors import InputError  # noqa: F401
    from .errors import KeyMaterialError  # noqa: F401
    from .errors import NvsSecureError  # noqa: F401
    from .formats.nvs_image import NvsEntry  # noqa: F401
    from .formats.nvs_image import build_nvs_image  # noqa: F401
    from .formats.nvs_image import validate_entry  # noqa: F401
    from .formats.nvs_keys import NvsKeys  # noqa: F401
    from .formats.nvs_keys import build_nvs_keys  # noqa: F401
    from .formats.nvs_keys import derive_nvs_keys_from_hmac  # noqa: F401
    from .formats.nvs_keys import generate_nvs_keys  # noqa: F401
    from .formats.nvs_keys import parse_nvs_keys  # noqa: F401
    from .formats.nvs_reader import NvsImage  # noqa: F401
    from .formats.nvs_reader import image_to_json  # noqa: F401
    from .formats.nvs_reader import parse_nvs_image  # noqa: F401
    from .formats.partition_table import Partition  # noqa: F401
    from .formats.partition_table import PartitionTable  # noqa: F401
    from .formats.partition_table import build_partition_table  # noqa: F401
    from .formats.partition_table import parse_partition_table  # noqa: F401
    from .formats.partition_table import validate_partition_table  # noqa: F401
    from .formats.partition_table import find_name_warnings, secure_boot_check  # noqa: F401
    from .inputs.keysource import derive_hmac_key  # noqa: F401
    from .inputs.keysource import derive_nvs_keys  # noqa: F401
    from .inputs.nvs_csv import parse_nvs_csv  # noqa: F401
    from .inputs.nvs_yaml import NvsValues  # noqa: F401
    from .inputs.nvs_yaml import load_nvs_values  # noqa: F401
    from .inputs.partition_csv import format_partition_csv  # noqa: F401
    from .inputs.partition_csv import parse_partition_csv  # noqa: F401
    from .inputs.partitions_yaml import parse_partitions_yaml  # noqa: F401
    from .inputs.project import Project  # noqa: F401
    from .inputs.project import ResolvedProject  # noqa: F401
    from .inputs.project import load_project  # noqa: F401
    from .inputs.project import resolve_project  # noqa: F401
    from .plan.security import PlanIntent  # noqa: F401
    from .plan.security import SecurityPlan  # noqa: F401
    from .plan.security import detect_plan  # noqa: F401
