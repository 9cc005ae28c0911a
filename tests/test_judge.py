"""Validation of the shapes-world judge: clean renders >= 99%, degraded renders >= 97% on every metric,
and corrupted renders caught >= 99% of the time. The figures are printed (pytest -s)."""
import random

import numpy as np
import PIL.Image
import pytest

from lpd.judge import CORRUPTIONS, DEGRADATIONS, METRICS, corrupt, degrade, judge
from lpd.shapes import long_caption, render_scene, sample_scene


def prompts(n, seed, num_objects=(1, 9)):
    rng = random.Random(seed)
    for _ in range(n):
        scene = sample_scene(rng, num_objects)
        _, stated = long_caption(scene, rng)
        yield scene, [(k, a.name, b.name) for k, a, b in stated]


def mean_scores(images_and_prompts):
    rows = [judge(image, scene, rels) for image, (scene, rels) in images_and_prompts]
    return {m: float(np.nanmean([r[m] for r in rows])) for m in METRICS}


def show(label, scores):
    print(f"{label:>16}: " + "  ".join(f"{m} {100 * v:6.2f}%" for m, v in scores.items()))


@pytest.mark.slow  # scores hundreds of rendered scenes: ~5 s
def test_clean_renders():
    scores = mean_scores((render_scene(s), (s, r)) for s, r in prompts(300, seed=1))
    show("clean (300)", scores)
    assert all(v >= 0.99 for v in scores.values()), scores


@pytest.mark.slow  # the judge's validation over hundreds of renders: ~1-4 s each, 18 s in all
@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degraded_renders(kind):
    rng = random.Random(2)
    scores = mean_scores((degrade(render_scene(s), kind, rng), (s, r)) for s, r in prompts(120, seed=3))
    show(f"{kind} (120)", scores)
    assert all(v >= 0.97 for v in scores.values()), scores


@pytest.mark.slow  # the judge's validation over hundreds of renders: ~1-4 s each, 18 s in all
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruptions_are_caught(kind):
    rng = random.Random(4)
    metric, caught, n = CORRUPTIONS[kind], 0, 0
    for scene, rels in prompts(150, seed=5, num_objects=(1, 8)):
        changed = corrupt(scene, kind, rng)
        caught += judge(render_scene(changed), scene, rels)[metric] < 1.0
        n += 1
    print(f"{kind:>16}: caught {caught}/{n} = {100 * caught / n:.1f}% (by {metric})")
    assert caught / n >= 0.99


@pytest.mark.slow
def test_random_images_score_near_zero():
    "The judge is not fooled by noise: uniform random pixels find no objects."
    rng = np.random.default_rng(0)
    from PIL import Image

    images = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(20)]
    scores = mean_scores(zip(images, prompts(20, seed=6, num_objects=(4, 9))))
    show("random pixels", scores)
    assert scores["presence"] < 0.05 and scores["location"] < 0.05


DOCUMENTED_TOLERANCE = 70.0  # RGB distance, nbs/06c_judge.ipynb: farther pixels are ignored as edge blends


def shifted_colours(image, scene, distance):
    "Every object's colour moved by `distance` in RGB, in a direction that keeps it nearest to its own palette colour."
    from lpd.shapes import BACKGROUNDS, COLOURS

    tol = DOCUMENTED_TOLERANCE
    palette = np.array(list(COLOURS.values()) + list(BACKGROUNDS.values()), dtype=float)
    arr = np.asarray(image).astype(float)
    out = arr.copy()
    for colour in {o.colour for o in scene.objects}:
        c = np.array(COLOURS[colour], dtype=float)
        for u in ((np.array(k) - 1) / np.linalg.norm(np.array(k) - 1) for k in np.ndindex(3, 3, 3) if k != (1, 1, 1)):
            far = c + 1.3 * tol * u
            own = np.linalg.norm(palette - (c + 0.85 * tol * u), axis=1).argmin() == list(COLOURS).index(colour)
            alone = np.linalg.norm(palette - (c + 1.15 * tol * u), axis=1).min() > tol
            if far.min() >= 0 and far.max() <= 255 and own and alone:
                break
        else:
            raise AssertionError(f"no direction for {colour}")
        out[(arr == c).all(-1)] = c + distance * u
    return PIL.Image.fromarray(out.round().astype(np.uint8))


def test_colour_tolerance_is_where_it_is_documented():
    "Objects whose colour is off by 85% of the documented tolerance are still found; at 115% they are not."
    cases = list(prompts(40, seed=7))
    within = mean_scores((shifted_colours(render_scene(s), s, 0.85 * DOCUMENTED_TOLERANCE), (s, r)) for s, r in cases)
    beyond = mean_scores((shifted_colours(render_scene(s), s, 1.15 * DOCUMENTED_TOLERANCE), (s, r)) for s, r in cases)
    assert within["presence"] >= 0.99 and beyond["presence"] <= 0.01, (within, beyond)
