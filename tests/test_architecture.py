"""The layers of docs/architecture.md: import contracts (pyproject's [tool.importlinter]) and what loads at run time."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "diffusers", "transformers", "safetensors", "peft")


def test_the_import_contracts_hold() -> None:
    """import-linter checks every import, function-level ones too, against the contracts."""
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports(no_cache=True))"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "4 kept, 0 broken" in out.stdout


def loaded_after(code: str) -> list[str]:
    """The heavy libraries loaded in a fresh interpreter after running ``code``."""
    probe = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return eval(out.stdout.strip().splitlines()[-1])  # a printed list of names


def test_the_apps_model_and_its_job_functions_import_without_torch_or_qt() -> None:
    code = ("import bas_desktop.model.jobs, bas_desktop.model.importing, bas_desktop.model.project, "
            "bas_desktop.model.gallery_store, bas_desktop.model.model_setup, bas_desktop.model.local_edit\n"
            "assert not any(m.startswith('PySide6') for m in sys.modules), 'Qt was loaded'")
    assert loaded_after(code) == []
