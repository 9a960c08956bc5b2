"""Writing a built output set: its manifest, and the refusal to replace keys silently.

Shared by ``idf-nvs-secure build`` and the CMake build step."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..._version import __version__
from ...build.artifacts import Build
from ...errors import KeyMaterialError
from ...formats.nvs_keys import key_fingerprint
from ...fsutil import output_lock, write_key_file, write_output_set
from ...inputs.keysource import DERIVATION_VERSION

__all__ = ["OUTPUT_SET_FORMAT", "OUTPUT_SET_MANIFEST", "output_set_manifest",
           "check_key_provenance", "write_build"]

OUTPUT_SET_FORMAT = "idf-nvs-secure-outputs/1"
#: The manifest of an output set, written last, after every file of the set.
OUTPUT_SET_MANIFEST = "outputs.json"


def _file_json(artifact) -> dict:
    out = artifact.output
    item = {"path": out.path, "kind": out.kind, "partition": out.partition,
            "offset": out.offset, "size": len(artifact.data), "key_source": out.key_source}
    if out.secret:
        item["fingerprint"] = key_fingerprint(artifact.data)  # key material: no full hash
    else:
        item["sha256"] = hashlib.sha256(artifact.data).hexdigest()
    return item


def output_set_manifest(build: Build) -> bytes:
    """The set's manifest (written last): every file with its hash (key material by
    fingerprint), where the keys came from, and the output plan."""
    plan = build.plan
    data = {"format": OUTPUT_SET_FORMAT,
            "tool": {"name": "idf-nvs-secure", "version": __version__},
            "product": plan.product if plan else None,
            "reproducible": build.reproducible,
            "master_secret": build.master_fingerprint,
            "derivation": DERIVATION_VERSION,
            "files": [_file_json(a) for a in build.artifacts],
            "plan": plan.to_json() if plan else None}
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def check_key_provenance(out_dir: Path, manifest_name: str, build: Build, *,
                         force: bool) -> None:
    """Refuse to replace key files of an earlier set with other keys unless ``force``:
    a device flashed with the old keys cannot read images made with the new ones, and
    keys of source ``generate`` can never be made again."""
    try:
        old = json.loads((Path(out_dir) / manifest_name).read_text(encoding="utf-8"))
        before = {f["path"]: f for f in old["files"] if "fingerprint" in f}
    except (OSError, ValueError, KeyError, TypeError):
        return
    for artifact in build.artifacts:
        prior = before.get(artifact.name)
        if prior is None or not artifact.secret:
            continue
        now = key_fingerprint(artifact.data)
        if prior["fingerprint"] == now or force:
            continue
        was = (f"master secret {old.get('master_secret')}" if old.get("master_secret")
               else f"keys: {prior.get('key_source')}")
        comes = (f"master secret {build.master_fingerprint}" if build.master_fingerprint
                 else f"keys: {artifact.output.key_source}")
        raise KeyMaterialError(
            f"{artifact.name} would change from {prior['fingerprint']} ({was}) to {now} "
            f"({comes}); devices flashed with the old keys could not read the new images",
            file=str(Path(out_dir) / artifact.name),
            hint="check NVS_MASTER_SECRET (or the key source); pass --force to replace the keys")


def write_build(out_dir: Path, build: Build, *, force: bool | None = None) -> None:
    """Write ``build`` into ``out_dir`` as one set, under the folder's lock: first the
    keystore's new key material (never overwritten), then the set with its manifest.
    ``force`` (not None): check the keys against the set already there first (None: the
    folder is derived state, as a CMake build folder is)."""
    with output_lock(out_dir):
        if force is not None:
            check_key_provenance(out_dir, OUTPUT_SET_MANIFEST, build, force=force)
        for path, data in (build.new_keystore_files or {}).items():
            write_key_file(path, data)
        write_output_set(out_dir, [(a.name, a.data, a.secret) for a in build.artifacts],
                         manifest=(OUTPUT_SET_MANIFEST, output_set_manifest(build)),
                         owned=OUTPUT_SET_MANIFEST)
