"""The benchmark scripts under tests/ run: the shapes-world throughput script, small (its full run wrote
reports/shapes_throughput.json). The two-GPU training script runs in tests/test_gpu.py."""
import json
import subprocess
import sys

import pytest

from lpd.core import repo_root


@pytest.mark.slow
def test_shapes_throughput_script(tmp_path):
    out = tmp_path / "throughput.json"
    proc = subprocess.run([sys.executable, str(repo_root() / "tests" / "bench" / "shapes_throughput.py"), "60", "20",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert (result["scenes"], result["judged"], result["clean_presence"]) == (60, 20, 1.0)
    assert "render + caption" in proc.stdout and result["scenes_per_s"] > 0
