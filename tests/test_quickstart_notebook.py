"""examples/quickstart.ipynb runs top to bottom, as a plain script would (its cells in order, no kernel)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_the_quickstart_notebook_runs(tmp_path):
    pytest.importorskip("matplotlib")
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    script = tmp_path / "quickstart.py"
    script.write_text("\n\n".join(code) + "\n\nprint('AUC', report['auc'], 'HOMO', "
                      "lr.evaluate(hfed.horizontal({'north': parts['test']}))['auc'])\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = done.stdout.split()
    assert float(figures[figures.index("AUC") + 1]) > 0.95 and float(figures[figures.index("HOMO") + 1]) > 0.95
