"""``python -m idf_nvs_secure``: the same command line as ``idf-nvs-secure``.

Two commands CMake runs often answer without loading the command line: ``cmake-dir``
(where the CMake module is) and ``cmake-stamp`` (the build's stamp step)."""

import sys


def _fast() -> int | None:
    argv = sys.argv[1:]
    if argv == ["cmake-dir"]:
        from importlib.util import find_spec

        spec = find_spec("idf_nvs_secure.cmake")
        if spec is None or not spec.submodule_search_locations:
            return None
        print(f"{list(spec.submodule_search_locations)[0]}/idf_nvs_secure")
        return 0
    if argv[:1] == ["cmake-stamp"]:
        from .app.stamp import main

        return main(argv[1:])
    return None


code = _fast()
if code is not None:
    sys.exit(code)

from .app.cli import main  # noqa: E402

main()
