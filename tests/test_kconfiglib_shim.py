"""Inside ESP-IDF's venv, esp-idf-kconfig's 'kconfiglib' shim package shadows the real
kconfiglib.py; the plan must still load the real one (found while building with ESP-IDF)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_real_kconfiglib_is_loaded_when_a_shim_package_shadows_it(tmp_path):
    shim = tmp_path / "kconfiglib"
    shim.mkdir()
    (shim / "__init__.py").write_text("# like esp-idf-kconfig's shim: no escape()\nKconfig = object\n")
    code = textwrap.dedent("""
        import sys
        import kconfiglib as shadow
        assert not hasattr(shadow, "escape"), "the shim should shadow kconfiglib here"
        from idf_nvs_secure.config._kconfiglib import kconfiglib
        assert kconfiglib.__file__.endswith("kconfiglib.py"), kconfiglib.__file__
        assert hasattr(kconfiglib, "escape") and hasattr(kconfiglib, "Kconfig")
        from idf_nvs_secure.config.sdkconfig import read_config  # the module that needs it
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _load_in(path, code_before: str = "") -> subprocess.CompletedProcess:
    code = code_before + textwrap.dedent("""
        import sys
        from idf_nvs_secure.config._kconfiglib import kconfiglib
        assert hasattr(kconfiglib, "escape") and hasattr(kconfiglib, "Kconfig")
        assert "esp_kconfiglib" not in sys.modules and "rich" not in sys.modules
        print(kconfiglib.__file__)
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=path, capture_output=True,
                          text=True, env={"PYTHONPATH": str(path)})


def test_the_shim_is_never_imported(tmp_path):
    """Importing esp-idf-kconfig's shim costs its fork and rich (about 40 ms of every
    planning command in ESP-IDF's venv): the real file is found without running it."""
    shim = tmp_path / "kconfiglib"
    shim.mkdir()
    (shim / "__init__.py").write_text("raise SystemExit('the shim was imported')\n")
    result = _load_in(tmp_path)  # the distribution's file elsewhere on the path
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("site-packages/kconfiglib.py")
    from importlib import metadata  # a copy beside the shim, as in a venv's site-packages

    real = metadata.distribution("kconfiglib").locate_file("kconfiglib.py")
    (tmp_path / "kconfiglib.py").write_bytes(real.read_bytes())
    result = _load_in(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "kconfiglib.py")
