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

__version__ = "0.1.0"

from .build.artifacts import Build, BuiltArtifact, build_artifacts, plan_for_project  # noqa: E402
from .errors import (  # noqa: E402
    CapacityError,
    FormatError,
    InputError,
    KeyMaterialError,
    NvsSecureError,
)
from .formats.nvs_image import NvsEntry, build_nvs_image, validate_entry  # noqa: E402
from .formats.nvs_keys import (  # noqa: E402
    NvsKeys,
    build_nvs_keys,
    derive_nvs_keys_from_hmac,
    generate_nvs_keys,
    parse_nvs_keys,
)
from .formats.nvs_reader import NvsImage, image_to_json, parse_nvs_image  # noqa: E402
from .formats.partition_table import (  # noqa: E402
    Partition,
    PartitionTable,
    build_partition_table,
    find_name_warnings,
    parse_partition_table,
    secure_boot_check,
    validate_partition_table,
)
from .inputs.keysource import derive_hmac_key, derive_nvs_keys  # noqa: E402
from .inputs.nvs_csv import parse_nvs_csv  # noqa: E402
from .inputs.nvs_yaml import NvsValues, load_nvs_values  # noqa: E402
from .inputs.partition_csv import format_partition_csv, parse_partition_csv  # noqa: E402
from .inputs.partitions_yaml import parse_partitions_yaml  # noqa: E402
from .inputs.project import Project, ResolvedProject, load_project, resolve_project  # noqa: E402
from .plan.security import PlanIntent, SecurityPlan, detect_plan  # noqa: E402

__all__ = [
    "__version__",
    # errors
    "NvsSecureError", "InputError", "FormatError", "KeyMaterialError", "CapacityError",
    # partition tables
    "Partition", "PartitionTable", "build_partition_table", "parse_partition_table",
    "validate_partition_table", "find_name_warnings", "secure_boot_check",
    "parse_partition_csv", "format_partition_csv", "parse_partitions_yaml",
    # NVS images
    "NvsEntry", "build_nvs_image", "validate_entry", "NvsImage", "parse_nvs_image",
    "image_to_json", "parse_nvs_csv", "NvsValues", "load_nvs_values",
    # keys
    "NvsKeys", "build_nvs_keys", "parse_nvs_keys", "generate_nvs_keys",
    "derive_nvs_keys_from_hmac", "derive_nvs_keys", "derive_hmac_key",
    # projects, plans, builds
    "Project", "ResolvedProject", "load_project", "resolve_project",
    "SecurityPlan", "PlanIntent", "detect_plan",
    "Build", "BuiltArtifact", "plan_for_project", "build_artifacts",
]
