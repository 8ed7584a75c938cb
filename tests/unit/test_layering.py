"""``import sqldom`` (what build.py does) must stay cheap: no SQLAlchemy, markdown-it or dagger."""

from __future__ import annotations

import subprocess
import sys


def test_importing_sqldom_imports_no_heavy_library() -> None:
    code = ("import sys, sqldom; heavy = [m for m in ('sqlalchemy', 'alembic', 'markdown_it', 'markdown_it_pyrs', 'dagger', 'rich', "
            "'watchfiles') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_package_of_the_source_tree_is_shipped() -> None:
    """An editable install finds every folder; a wheel ships only what pyproject.toml lists."""
    import tomllib
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    src = repo / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    found |= {"sqldom.migrations." + ".".join(p.parent.relative_to(repo / "migrations").parts)
              for p in (repo / "migrations").rglob("__init__.py")}
    found = {name.rstrip(".") for name in found}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
