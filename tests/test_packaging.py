"""Packaging: the numpy core never imports TensorFlow, every notebook is tested, environments agree."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TF_MODULES = ("tensorflow", "keras", "tf_keras")


def run_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (this process may already have imported TensorFlow)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


# --- import fl_helpers never imports TensorFlow -------------------------------------------

#: The light core: importing any of these loads, of the third-party packages, only what numpy,
#: matplotlib and ipywidgets load themselves (in fact: numpy only), and never TensorFlow.
LIGHT_CORE = ("fl_helpers", "fl_helpers.models", "fl_helpers.optim", "fl_helpers.randomness", "fl_helpers.wire",
              "fl_helpers.tf_env")
CORE_DEPENDENCIES = ("numpy", "matplotlib", "ipywidgets")

THIRD_PARTY = """
import sys, importlib
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(*sorted({m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))
"""


def third_party_loaded(*modules: str) -> set[str]:
    """Top-level non-standard-library packages a fresh interpreter loads to import ``modules``."""
    out = subprocess.run([sys.executable, "-c", THIRD_PARTY, *modules], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_import_fl_helpers_does_not_import_tensorflow():
    out = run_python("import fl_helpers, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
                     "assert 'keras' not in sys.modules, 'keras imported'")
    assert out.returncode == 0, out.stderr


def test_the_light_core_imports_numpy_matplotlib_and_ipywidgets_only():
    allowed = third_party_loaded(*CORE_DEPENDENCIES) | {"fl_helpers"}
    assert {"numpy", "matplotlib", "ipywidgets"} <= allowed

    for module in LIGHT_CORE:
        loaded = third_party_loaded(module)
        assert "fl_helpers" in loaded and not loaded & set(TF_MODULES), (module, loaded)
        assert loaded <= allowed, f"import {module} loads {sorted(loaded - allowed)}"


IMPORT_ALL = f"""
import importlib, pkgutil, sys

TF_MODULES = {TF_MODULES!r}


def is_tf(name):
    # engines.tf_engine and anything named *tf* / *keras* is the TensorFlow edge, loaded on demand
    return any(part == "tf" or part.startswith("tf_") or part.endswith("_tf") or "keras" in part
               or "tensorflow" in part for part in name.split("."))


def walk(package):
    # like pkgutil.walk_packages, but a skipped package is never imported
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if is_tf(info.name):
            print("skipped", info.name)
            continue
        module = importlib.import_module(info.name)
        print("imported", info.name)
        if info.ispkg:
            walk(module)


import fl_helpers
walk(fl_helpers)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in TF_MODULES)
assert not loaded, f"importing the non-TensorFlow modules of fl_helpers imported {{loaded[:5]}}"
"""


def test_every_non_tensorflow_module_imports_without_tensorflow():
    out = run_python(IMPORT_ALL)

    assert out.returncode == 0, out.stderr
    imported = {line.split()[1] for line in out.stdout.splitlines() if line.startswith("imported ")}
    assert {"fl_helpers.check", "fl_helpers.engines", "fl_helpers.engines.loop",
            "fl_helpers.engines.vectorized", "fl_helpers.server", "fl_helpers.data", "fl_helpers.models",
            "fl_helpers.models.glm", "fl_helpers.optim", "fl_helpers.randomness", "fl_helpers.wire",
            "fl_helpers.validation", "fl_helpers.aggregation", "fl_helpers.widgets.explorer",
            "fl_helpers.widgets.dashboard"} <= imported
    assert not {"fl_helpers._tf", "fl_helpers._validate"} & imported       # renamed: tf_env, validation
    assert not any("tf_engine" in name for name in imported)


# --- every notebook runs under nbval ------------------------------------------------------

def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_pytest_runs_the_notebooks_with_nbval():
    options = _pyproject()["tool"]["pytest"]["ini_options"]

    assert "notebooks" in options["testpaths"] and "tests" in options["testpaths"]
    assert "--nbval" in options["addopts"].split() and "--nbval-current-env" in options["addopts"].split()


def test_every_notebook_is_collected_by_nbval():
    notebooks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks yet in notebooks/")

    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "notebooks"], cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    collected = {line.split("::")[0] for line in out.stdout.splitlines() if "::" in line}
    missing = [nb for nb in notebooks if nb not in collected]
    assert not missing, f"notebooks nbval does not collect (no code cells, or not under testpaths?): {missing}"


# --- pyproject.toml and environment.yml declare the same packages --------------------------

def _specs(spec: str) -> frozenset[str]:
    return frozenset(str(s) for s in SpecifierSet(spec))


def _add(table: dict, requirement: str, source: str) -> None:
    req = Requirement(requirement)
    name = canonicalize_name(req.name) + (f"[{','.join(sorted(req.extras))}]" if req.extras else "")
    assert name not in table, f"{name} is declared twice in {source}"
    table[name] = _specs(str(req.specifier))


def pyproject_requirements() -> tuple[dict, frozenset]:
    project = _pyproject()["project"]
    table: dict = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"] \
            + project["optional-dependencies"]["cpu"]:
        _add(table, requirement, "pyproject.toml")
    return table, _specs(project["requires-python"])


def environment_requirements(path: Path) -> tuple[dict, frozenset | None]:
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load(path.read_text(encoding="utf-8"))
    table: dict = {}
    python = None
    for entry in env.get("dependencies") or []:
        if isinstance(entry, dict):                                  # the pip: section
            for item in entry.get("pip") or []:
                item = item.strip()
                if item.startswith(("-", ".")) or "/" in item or "://" in item:
                    continue                                        # the project itself (-e .[dev,cpu]) or a URL
                _add(table, item, "environment.yml (pip)")
            continue
        conda = _conda_to_pep508(str(entry))
        req = Requirement(conda)
        if canonicalize_name(req.name) == "python":
            python = _specs(str(req.specifier))
        elif canonicalize_name(req.name) != "pip":
            _add(table, conda, "environment.yml")
    return table, python


def _conda_to_pep508(entry: str) -> str:
    """A conda match spec in PEP 508 form.

    "conda-forge::numpy >=2,<3" -> "numpy>=2,<3";  "python=3.11" (conda's fuzzy pin) -> "python==3.11.*".
    """
    spec = re.sub(r"\s+", "", entry.split("::")[-1])
    name, rest = re.match(r"([A-Za-z0-9_.\-\[\]]+)(.*)", spec).groups()
    if rest.startswith("=") and not rest.startswith("=="):      # conda's fuzzy pin: =3.11 means 3.11.*
        rest = "==" + rest[1:].removesuffix(".*").removesuffix("*") + ".*"
    return name + rest


def test_environment_yml_declares_the_same_packages_as_pyproject():
    path = ROOT / "environment.yml"
    if not path.exists():
        pytest.fail("environment.yml is missing: it must list the packages of pyproject.toml's dependencies "
                    "and its dev and cpu extras, with the same version bounds")

    want, want_python = pyproject_requirements()
    got, got_python = environment_requirements(path)

    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    differ = {name: (sorted(want[name]), sorted(got[name])) for name in set(want) & set(got) if want[name] != got[name]}
    assert not (missing or extra or differ), (
        f"environment.yml disagrees with pyproject.toml: missing {missing}, not in pyproject {extra}, "
        f"different bounds (pyproject, environment.yml) {differ}")
    if got_python is not None:
        assert _python_allowed(got_python, want_python), (
            f"environment.yml's python {sorted(got_python)} is outside requires-python {sorted(want_python)}")


def _python_allowed(env_python: frozenset, requires_python: frozenset) -> bool:
    """A pinned python (Binder needs one, e.g. python=3.11) must satisfy requires-python; a range must equal it."""
    allowed = SpecifierSet(",".join(requires_python))
    if len(env_python) == 1 and next(iter(env_python)).startswith("=="):
        return allowed.contains(next(iter(env_python)).removeprefix("==").removesuffix(".*"))
    return env_python == requires_python


def test_the_environment_comparison_notices_a_changed_bound(tmp_path):
    """The parser reads conda and pip entries and a changed bound shows up (guards the test above)."""
    want, _ = pyproject_requirements()
    lines = ["name: fl-course", "channels: [conda-forge]", "dependencies:", "  - python>=3.11,<3.14", "  - pip",
             "  - numpy >=2.0,<4", "  - pip:", "    - -e .[dev,cpu]"]
    lines += [f"    - {name}{','.join(sorted(spec))}" for name, spec in want.items() if name != "numpy"]
    (tmp_path / "environment.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    got, python = environment_requirements(tmp_path / "environment.yml")

    assert set(got) == set(want) and python == _specs(">=3.11,<3.14")
    assert _conda_to_pep508("python=3.11") == "python==3.11.*"
    assert _conda_to_pep508("conda-forge::numpy >=2.0, <3") == "numpy>=2.0,<3"
    assert _python_allowed(_specs("==3.11.*"), _specs(">=3.11,<3.14"))
    assert not _python_allowed(_specs("==3.10.*"), _specs(">=3.11,<3.14"))
    assert got["numpy"] != want["numpy"] and got["numpy"] == _specs(">=2.0,<4")
    assert all(got[name] == want[name] for name in want if name != "numpy")
