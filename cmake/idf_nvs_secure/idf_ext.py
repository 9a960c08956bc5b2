"""idf.py extension of the idf_nvs_secure component (loaded by ESP-IDF 6+ for the
components of a build).  A shim: the one implementation is idf_nvs_secure.app.idf_ext, which
idf.py also loads as the ``idf_extension`` entry point; whichever loads first registers
the commands, the other adds nothing."""

try:
    from idf_nvs_secure.app.idf_ext import action_extensions  # noqa: F401
except ImportError as _exc:  # the component is on disk but the package is not installed
    _REASON = str(_exc)

    def action_extensions(base_actions: dict, project_path: str) -> dict:
        import sys

        print(f"WARNING: idf_nvs_secure's idf.py commands are unavailable ({_REASON}); "
              "install it in ESP-IDF's Python: pip install idf-nvs-secure", file=sys.stderr)
        return {"version": "1"}
