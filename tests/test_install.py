"""A regular (non-editable) install works away from the checkout: `import lpd` from the installed copy, the
shipped assets (toy SD3, tokenizers) under lpd/assets, the tiny SD3 built under ~/.cache/lpd, and `lpd-infer` with
no model flag."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lpd.core import repo_root

SCRIPT = """
import json, lpd, lpd.core, lpd.tiny, lpd.infer
out = {"lpd": lpd.__file__, "toy": str(lpd.core.asset_path("toy-sd3", "model_index.json")),
       "tiny": str(lpd.tiny.ensure_tiny()),
       "infer": lpd.infer.main(["--prompt", "A small red circle in the top left corner, on a black background.",
                                "--output_dir", "out", "--num_inference_steps", "2"])}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_regular_install_runs_away_from_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(repo_root()), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True)
    wheel = next((tmp_path / "wheel").glob("lpd-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(tmp_path / "site")}
    env.pop("LPD_CACHE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["lpd"]).is_relative_to(tmp_path / "site")
    assert Path(out["toy"]).is_file() and Path(out["toy"]).is_relative_to(tmp_path / "site")
    assert Path(out["tiny"]) == home / ".cache" / "lpd" / "models" / "tiny-sd3"
    assert out["infer"] == 0 and (work / "out" / "compose.png").is_file()
