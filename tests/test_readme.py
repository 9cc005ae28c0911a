"""Every shell block of the README runs as written on a fresh copy of the checkout (tests/readme_run.py holds the
only substitutions: the tiny settings where a block names real weights, data or a GPU)."""
import pytest


@pytest.mark.slow
def test_every_readme_shell_block_runs(readme_run):
    copy = readme_run
    assert (copy / "reports" / "demo" / "contact_sheet.png").is_file()  # make demo
    assert (copy / "weights" / "sd3.5-medium" / "model_index.json").is_file()  # the download's stand-in
    assert (copy / "logs" / "lpd_sd35_minimal" / "checkpoint-2" / "model.safetensors").is_file()  # training
    assert (copy / "output" / "infer" / "component_3.png").is_file()  # the original's inference command
    assert (copy / "reports" / "runs" / "lpd" / "metrics.json").is_file()  # lpd-eval with that decomposer
    assert len(list((copy / "out" / "images").iterdir())) == 4  # lpd-eval on the prompt file: images only
    runs = sorted(p.name for p in (copy / "reports" / "runs").iterdir())  # lpd-eval's two, the study's two
    pages = sorted(p.name for p in (copy / "reports" / "pages").rglob("*.html"))
    assert pages == sorted(["index.html", *(f"{r}.html" for r in runs)]), (runs, pages)
