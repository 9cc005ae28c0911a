"""One shapes world: the committed fixture set is what lpd.shapes renders."""
import numpy as np
from PIL import Image

from lpd.core import repo_root
from lpd.data import FIXTURE_DIR
from lpd.shapes import render_fixture_set


def test_fixture_set_is_what_lpd_shapes_renders(tmp_path):
    committed = repo_root() / FIXTURE_DIR
    fresh = render_fixture_set(tmp_path / "fixture")
    assert (fresh / "captions.jsonl").read_text() == (committed / "captions.jsonl").read_text()
    names = sorted(p.name for p in (committed / "images").iterdir())
    assert names == sorted(p.name for p in (fresh / "images").iterdir()) and len(names) == 26
    for name in names:
        assert np.array_equal(np.asarray(Image.open(fresh / "images" / name)),
                              np.asarray(Image.open(committed / "images" / name))), name
