"""The version lives in two places (pyproject.toml, lrnde_np.__version__); they must agree, and the
changelog must have an entry for it."""

import pathlib
import re

import lrnde_np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pyproject_version():
    text = (ROOT / "pyproject.toml").read_text()
    project = text[text.index("[project]") :]
    return re.search(r'^version\s*=\s*"([^"]+)"', project, re.MULTILINE).group(1)


def test_package_version_equals_pyproject_version():
    assert lrnde_np.__version__ == pyproject_version()


def test_changelog_has_an_entry_for_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(lrnde_np.__version__)}\]", changelog, re.MULTILINE)
