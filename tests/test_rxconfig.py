"""The dev-mode backend restarts only when the dashboard's code changes, not when var/ does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_hot_reload_watches_code_not_the_database_or_exports() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFLEX_HOT_RELOAD")}
    script = (
        "import json, rxconfig\n"
        "from reflex.utils.exec import get_reload_paths\n"
        "print(json.dumps([str(p) for p in get_reload_paths()]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    watched = [Path(p) for p in json.loads(result.stdout.strip().splitlines()[-1])]
    assert ROOT / "dashboard" in watched
    assert ROOT / "payments_core" in watched
    var = ROOT / "var"
    assert not any(var == p or var in p.parents or p in var.parents for p in watched), watched
