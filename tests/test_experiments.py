"""The papermill templates of nbs/experiments run end to end on the tiny SD3 and fill their run folders; the
report's HTML page renders in headless Chromium with every image loaded."""
import csv
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import papermill
import pytest

from lpd.core import repo_root
from lpd.runs import run_template
from lpd.text import sentences

TEMPLATES = repo_root() / "nbs" / "experiments"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(readme_run, tmp_path_factory):
    "The README's study runs (train, then eval with its decomposer), and a report over both through run_template."
    train = next((readme_run / "reports" / "runs").glob("*-tiny-s0"))
    evaluation = train.with_name(train.name + "-eval")
    report = run_template("report", tmp_path_factory.mktemp("report") / "report",
                          {"run_dirs": [str(train), str(evaluation)]})
    return {"train": train, "eval": evaluation, "report": report}


def test_train_template_parameters():
    "papermill --help-notebook: the train template takes a profile and overrides, each parameter documented."
    params = papermill.inspect_notebook(str(TEMPLATES / "train.ipynb"))
    assert set(params) == {"seed", "run_dir", "profile", "overrides", "sample_inference_steps"}
    assert all(p["help"] for p in params.values())


@pytest.mark.slow
def test_unknown_override_is_named(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="not lpd-train settings: \\['max_steps'\\]"):
        run_template("train", tmp_path / "run", {"overrides": {"max_steps": 4}})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train", "eval", "report"])
def test_run_folder(runs, name):
    run = runs[name]
    assert {f"{name}.ipynb", "params.json", "env.json", "metrics.json", "samples"} <= {p.name for p in run.iterdir()}
    params = json.loads((run / "params.json").read_text())
    env = json.loads((run / "env.json").read_text())
    assert Path(params["run_dir"]).name == run.name and env["packages"]["torch"] and "device" in env
    metrics = json.loads((run / "metrics.json").read_text())
    expected = {"train": {"global_step", "final_loss", "first_loss", "last_loss", "num_skipped_rows"},
                "eval": {"overall", "by_num_objects", "by_t5_tokens", "num_judged"},
                "report": {"num_runs", "pages"}}[name]
    assert expected <= set(metrics), metrics.keys()
    if name == "train":  # data/profiles/tiny.yaml, the template's default profile
        assert params["max_train_steps"] == 30 and params["learning_rate"] == 1e-3 and params["center_crop"]
        assert metrics["global_step"] == 30
        assert len(list((run / "samples").glob("validation_k*.png"))) == 4
    if name == "eval":
        assert metrics["num_judged"] == 8 and len(list((run / "samples").glob("*_decomposition.json"))) == 2


def image_widths(page, tmp_path):
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                          f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=10000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-image-widths="([^"]*)"', out.stdout)
    assert found, out.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_pages_render_in_chromium(runs, tmp_path):
    pages = json.loads((runs["report"] / "metrics.json").read_text())["pages"]
    names = [f"{runs[k].name}.html" for k in ("train", "eval")]
    assert [p.rsplit("/", 1)[-1] for p in pages] == ["index.html", *names]
    train_page, eval_page = Path(pages[1]), Path(pages[2])
    widths = image_widths(train_page, tmp_path)
    assert len(widths) == 4 and all(w > 0 for w in widths)  # loss, sheet, attention, similarity
    widths = image_widths(eval_page, tmp_path)
    assert len(widths) == 1 + 3 * 2 and all(w > 0 for w in widths)  # bins plot + 3 figures x 2 prompts
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1400,2000",
                    f"--screenshot={shot}", train_page.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


@pytest.mark.slow
def test_study_template(tiny_dir, tmp_path):
    "The study template on lpd-eval folders of the tiny SD3: curves, tables, sheets with word strips, its page."
    from lpd.evaluate import main as lpd_eval

    decomposer = tiny_dir / "decomposer"
    methods = {"base-full": [], "base-split": ["--baseline", "split"], "dec": ["--decomposer_ckpt", str(decomposer)]}
    for phrasing in ("train", "eval"):
        for method, extra in methods.items():
            assert lpd_eval(["--pretrained_model_name_or_path", str(tiny_dir), "--shapes_eval", "3",
                             "--shapes_objects", "2", "4", "--num_inference_steps", "2", "--shapes_phrasing", phrasing,
                             "--output_dir",
                             str(tmp_path / "results" / f"{method}-{phrasing}"), *extra]) == 0
    run = run_template("study", tmp_path / "study", {
        "results_dir": str(tmp_path / "results"), "methods": ",".join(methods), "labels": "whole|split|decomposer",
        "pretrained_model_name_or_path": str(tiny_dir), "decomposers": f"dec:{decomposer}", "sheet_sizes": "2,3,4",
        "num_inference_steps": 2, "carry_prompts": 2, "phrasings": "train,eval",
        "passes": "base-full:2,base-split:1+sentences,dec:5"})
    assert {"by_size_train.png", "by_size_eval.png", "table_train.csv", "table_eval.csv", "study.html",
            "similarity.json"} <= {p.name for p in run.iterdir()}
    table = (run / "table_train.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == ["whole", "split", "decomposer"]
    sizes = {json.loads(line)["num_objects"] for line in (tmp_path / "results" / "base-full-train" / "prompts.jsonl")
             .read_text().splitlines()}
    groups = list(csv.DictReader((run / "groups_train.csv").open()))  # passes per step, from the same prompts
    texts = [json.loads(line)["prompt"] for line in (tmp_path / "results" / "base-full-train" / "prompts.jsonl")
             .read_text().splitlines()]
    split = 1 + sum(len(sentences(t)) for t in texts) / len(texts)
    assert [float(g["passes/step 2-9"]) for g in groups] == [2.0, round(split, 1), 5.0]
    sheets = sorted((run / "dec").glob("*_sheet.png"))
    assert len(sheets) == len(sizes) and len(json.loads((run / "similarity.json").read_text())) == len(sizes)
    page = (run / "study.html").read_text()
    prompts = [json.loads(line) for line in (tmp_path / "results" / "base-full-train" / "prompts.jsonl")
               .read_text().splitlines()]
    carried = [r for r in prompts if r["num_objects"] >= 4][:2]  # section 3's prompts
    carry = json.loads((run / "carry.json").read_text())
    assert list(carry) == (["dec"] if carried else []) and all(len(m) == 9 and len(m[0]) == 4 for m in carry.values())
    # two figures; a sheet and a similarity map per prompt; the carry matrix
    assert page.count("<img ") == 2 + 2 * len(sizes) + bool(carried)
    assert page.count("<b>k") == 4 * len(sizes)  # a word strip per component (the tiny decomposer has 4)


@pytest.mark.slow
def test_bench_template(tmp_path):
    "The bench template at tiny scale on the CPU: the stamped JSON and table in the run folder and in output_dir."
    run = run_template("bench", tmp_path / "run", {"scale": "tiny", "sizes": "64", "train_batches": "2",
                                                   "compile": False, "warmup": 1, "iters": 2, "device": "cpu",
                                                   "train_setups": "adamw,adafactor+checkpointing",
                                                   "output_dir": str(tmp_path / "bench")})
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["scale"] == "tiny" and len(metrics["records"]) == 7
    assert [r.get("setup") for r in metrics["records"] if r["name"] == "training step"] == [
        "adamw", "adafactor+checkpointing"]
    assert sorted(p.suffix for p in (tmp_path / "bench").iterdir()) == [".json", ".md"]
    made = metrics["made_by"]  # a papermill line that runs the template again with the same parameters
    assert made["command"].startswith("papermill nbs/experiments/bench.ipynb ") and "-p scale tiny" in made["command"]
    assert {"torch", "diffusers", "transformers"} <= set(made["packages"]) and made["git_commit"]
