"""``import sqldom`` (what build.py does) must stay cheap: no SQLAlchemy, markdown-it or dagger."""

from __future__ import annotations

import subprocess
import sys


def test_importing_sqldom_imports_no_heavy_library() -> None:
    code = ("import sys, sqldom; heavy = [m for m in ('sqlalchemy', 'alembic', 'markdown_it', 'dagger', 'rich', "
            "'watchfiles') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
