"""lpd-train's optimizer, schedule, timestep density, loss weighting, data and loading flags, each checked against a
value computed another way (the update rule, the schedule's formula, the density's quantiles, the rows themselves)."""
import json
import logging
import math
import re
import shutil
import time
from types import SimpleNamespace

import pytest
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from scipy.stats import norm

import lpd.train
from lpd.core import repo_root
from lpd.train import (build_lr_scheduler, build_optimizer, caption_dataset, flow_matching_loss, load_frozen, main,
                       parse_args, sample_noisy_latents)

from helpers import run_args, tiny_train_args

FIXTURE = repo_root() / "data" / "fixtures" / "longalign"


def test_adamw_flags_follow_the_update_rule():
    "Two AdamW steps with --adam_beta1/2, --adam_epsilon, --adam_weight_decay move a weight as the rule says."
    b1, b2, eps, wd, lr = 0.8, 0.95, 0.5, 0.1, 0.01
    cfg = parse_args(["--adam_beta1", str(b1), "--adam_beta2", str(b2), "--adam_epsilon", str(eps),
                      "--adam_weight_decay", str(wd), "--learning_rate", str(lr)])
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = build_optimizer(cfg, [w])
    p, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate([2.0, -1.0], start=1):
        w.grad = torch.tensor([g])
        opt.step()
        p *= 1 - lr * wd  # decoupled weight decay, then the bias-corrected Adam step
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p -= lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
        assert w.item() == pytest.approx(p, rel=1e-6)


def test_scale_lr_multiplies_the_rate_by_the_samples_of_a_step():
    args = ["--learning_rate", "0.001", "--train_batch_size", "3", "--gradient_accumulation_steps", "2"]
    w = [torch.nn.Parameter(torch.zeros(1))]
    assert build_optimizer(parse_args(args), w, 5).param_groups[0]["lr"] == pytest.approx(0.001)
    assert build_optimizer(parse_args(args + ["--scale_lr"]), w, 5).param_groups[0]["lr"] == pytest.approx(0.03)
    assert type(build_optimizer(parse_args(["--use_adafactor"]), w)).__name__ == "Adafactor"


def lrs(args, steps, num_processes=1):
    "The learning rate of each optimizer step, as lpd-train logs it (after the scheduler's step)."
    cfg = parse_args(["--learning_rate", "1.0", *args])
    opt = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    sched = build_lr_scheduler(cfg, opt, steps, num_processes)
    out = []
    for _ in range(steps):
        opt.step()
        for _ in range(num_processes):  # accelerate steps a prepared scheduler once per process
            sched.step()
        out.append(sched.get_last_lr()[0])
    return out


@pytest.mark.parametrize("cycles", [1, 3])
def test_lr_num_cycles_restarts_the_cosine(cycles):
    steps = 12
    got = lrs(["--lr_scheduler", "cosine_with_restarts", "--lr_num_cycles", str(cycles), "--lr_warmup_steps", "0"],
              steps)
    want = [0.5 * (1 + math.cos(math.pi * ((cycles * s / steps) % 1))) if s < steps else 0.0
            for s in range(1, steps + 1)]
    assert got == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_lr_power_and_warmup_shape_the_polynomial_decay(power):
    steps, warmup, end = 10, 2, 1e-7  # diffusers' polynomial schedule ends at 1e-7
    got = lrs(["--lr_scheduler", "polynomial", "--lr_power", str(power), "--lr_warmup_steps", str(warmup)], steps)
    want = [s / warmup if s < warmup else (1 - end) * (1 - (s - warmup) / (steps - warmup)) ** power + end
            for s in range(1, steps + 1)]
    assert got == pytest.approx(want, abs=1e-9)
    assert lrs(["--lr_scheduler", "polynomial", "--lr_power", str(power), "--lr_warmup_steps", str(warmup)],
               steps, num_processes=2) == pytest.approx(want, abs=1e-9)  # the same schedule per optimizer step


def drawn_sigmas(monkeypatch, args, n=20000, shift=3.0):
    "The sigmas lpd-train draws for `n` images with these flags (the latents themselves do not matter)."
    monkeypatch.setattr(lpd.train, "clean_latents", lambda frozen, batch, generator: torch.zeros(n, 1, 1, 1))
    frozen = SimpleNamespace(noise_scheduler=FlowMatchEulerDiscreteScheduler(shift=shift))
    *_, sigmas = sample_noisy_latents(frozen, {}, parse_args(args), torch.Generator().manual_seed(0))
    return sigmas.flatten()


def shifted(u, shift=3.0):
    "The sigma of training time u in (0, 1) (sigma falls as u grows) on a scheduler of this shift."
    s = 1 - u
    return shift * s / (1 + (shift - 1) * s)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (1.5, 0.5)])
def test_logit_mean_and_std_set_the_timestep_density(monkeypatch, mean, std):
    "sigma's quartiles are those of u = sigmoid(N(mean, std)), as SD3's paper draws them."
    s = drawn_sigmas(monkeypatch, ["--weighting_scheme", "logit_normal", "--logit_mean", str(mean), "--logit_std",
                                   str(std)])
    for q in (0.25, 0.5, 0.75):
        u = 1 / (1 + math.exp(-(mean + std * norm.ppf(1 - q))))
        assert s.quantile(q).item() == pytest.approx(shifted(u), abs=0.01)


@pytest.mark.parametrize("scale", [0.0, 1.29])
def test_mode_scale_sets_the_mode_density(monkeypatch, scale):
    "--weighting_scheme mode: u = 1 - v - scale (cos^2(pi v / 2) - 1 + v) of a uniform v, a falling map of v."
    s = drawn_sigmas(monkeypatch, ["--weighting_scheme", "mode", "--mode_scale", str(scale)])
    for q in (0.25, 0.75):
        u = 1 - q - scale * (math.cos(math.pi * q / 2) ** 2 - 1 + q)
        assert s.quantile(q).item() == pytest.approx(shifted(u), abs=0.01)


@pytest.mark.parametrize("scheme", ["sigma_sqrt", "cosmap", "logit_normal"])
def test_weighting_scheme_weights_each_image_of_the_loss(scheme):
    g = torch.Generator().manual_seed(0)
    x0, noise, pred = (torch.randn(3, 4, 2, 2, generator=g) for _ in range(3))
    sigmas = torch.tensor([0.2, 0.5, 0.9]).view(-1, 1, 1, 1)
    weight = {"sigma_sqrt": sigmas**-2, "cosmap": 2 / (math.pi * (1 - 2 * sigmas + 2 * sigmas**2)),
              "logit_normal": torch.ones_like(sigmas)}[scheme]
    want = (weight * (pred - (noise - x0)) ** 2).mean(dim=(1, 2, 3)).mean()
    got = flow_matching_loss(pred, x0, noise, sigmas, scheme, precondition_outputs=0)["loss"]
    torch.testing.assert_close(got, want)


@pytest.mark.slow  # two loads of the tiny SD3
@pytest.mark.parametrize("upcast", [False, True])
def test_upcast_vae_keeps_the_vae_in_fp32_under_mixed_precision(tiny_dir, upcast):
    cfg = parse_args(["--pretrained_model_name_or_path", str(tiny_dir)] + ["--upcast_vae"] * upcast)
    frozen = load_frozen(cfg, SimpleNamespace(mixed_precision="bf16", device=torch.device("cpu")))
    assert frozen.pipe.vae.dtype == (torch.float32 if upcast else torch.bfloat16)
    assert frozen.pipe.transformer.dtype == torch.bfloat16


@pytest.mark.slow  # a copy and two loads of the tiny SD3
def test_variant_loads_that_variants_weights(tiny_dir, tmp_path):
    "--variant picks `*.<variant>.safetensors` (diffusers' naming) over the plain weights of the same folder."
    from safetensors.torch import load_file, save_file

    model = tmp_path / "sd3"
    shutil.copytree(tiny_dir, model)
    plain = next((model / "transformer").glob("*.safetensors"))
    weights = {k: v + 1 for k, v in load_file(plain).items()}
    save_file(weights, plain.with_name(plain.name.replace(".safetensors", ".shifted.safetensors")))
    accelerator = SimpleNamespace(mixed_precision="no", device=torch.device("cpu"))
    got = {v: load_frozen(parse_args(["--pretrained_model_name_or_path", str(model)]
                                     + (["--variant", v] if v else [])), accelerator).pipe.transformer.state_dict()
           for v in (None, "shifted")}
    name = next(iter(weights))
    torch.testing.assert_close(got["shifted"][name], weights[name])
    assert not torch.equal(got[None][name], weights[name])


class Loaded(Exception):
    "Raised by the recording loader below once it has seen its arguments: no model needs to load."


@pytest.mark.parametrize("command", ["lpd-train", "lpd-cache"])
def test_hub_flags_reach_the_model_loader(monkeypatch, command):
    "--revision, --variant, --cache_dir reach load_pipeline as typed (04_pipeline follows them into diffusers)."
    seen = {}

    def record(model, *args, **kwargs):
        seen.update(kwargs, model=model)
        raise Loaded

    monkeypatch.setattr(lpd.train, "load_pipeline", record)
    hub = ["--pretrained_model_name_or_path", "org/sd35", "--revision", "r1", "--variant", "fp16", "--cache_dir",
           "/hub-cache"]
    with pytest.raises(Loaded):
        if command == "lpd-train":
            load_frozen(parse_args(hub), SimpleNamespace(mixed_precision="no", device=torch.device("cpu")))
        else:
            lpd.train.cache_encodings("unused", hub + ["--dataset_name", str(FIXTURE), "--image_root", str(FIXTURE)],
                                      device="cpu")
    assert {k: seen[k] for k in ("model", "revision", "variant", "cache_dir")} == {
        "model": "org/sd35", "revision": "r1", "variant": "fp16", "cache_dir": "/hub-cache"}


def test_hub_dataset_flags_reach_the_dataset_loader(monkeypatch, tmp_path):
    "--dataset_config_name, --dataset_split, --cache_dir, --no_streaming reach load_caption_rows (06_data follows it)."
    seen = []

    def record(name, **kwargs):
        seen.append((name, kwargs))
        raise Loaded

    monkeypatch.setattr(lpd.train, "load_caption_rows", record)
    with pytest.raises(Loaded):
        caption_dataset(parse_args(["--dataset_name", "org/captions", "--dataset_config_name", "cfg", "--image_root",
                                    str(tmp_path), "--dataset_split", "validation", "--cache_dir", "/hub-cache",
                                    "--no_streaming"]))
    assert seen == [("org/captions", dict(streaming=False, split="validation", config_name="cfg",
                                          cache_dir="/hub-cache"))]


def test_ignored_flags_warn_in_one_line(caplog):
    with caplog.at_level(logging.WARNING, logger="lpd"):
        lpd.train._warn_ignored(parse_args([]))
        assert caplog.records == []
        lpd.train._warn_ignored(parse_args(["--hub_token", "x", "--hub_model_id", "me/m", "--num_validation_images",
                                            "2"]))
    said = [r.getMessage() for r in caplog.records]
    assert [m.split()[0] for m in said] == ["--num_validation_images", "--hub_token", "--hub_model_id"]
    assert all("no effect" in m and "\n" not in m for m in said)


def renamed_rows(tmp_path, rows):
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path / "meta.jsonl")


def fixture_rows(n):
    return [json.loads(line) for line in (FIXTURE / "captions.jsonl").read_text().splitlines()][:n]


def test_column_flags_and_max_train_samples_read_the_named_columns(tmp_path):
    "Captions, image paths and sources come from the columns the flags name; decoys under the default names."
    rows = [{"desc": r["caption"], "file": r["path"], "origin": "kept", "caption": "decoy", "path": "missing.png",
             "source": "dropped"} for r in fixture_rows(5)]
    cfg = parse_args(["--dataset_name", renamed_rows(tmp_path, rows), "--image_root", str(FIXTURE), "--no_streaming",
                      "--no_shuffle", "--caption_column", "desc", "--path_column", "file", "--source_column",
                      "origin", "--source_filter", "kept", "--max_train_samples", "3", "--no_skip_missing_images",
                      "--resolution", "32"])
    assert [s["caption"] for s in caption_dataset(cfg)] == [r["desc"] for r in rows[:3]]


def test_image_column_reads_an_image_held_in_the_row(tmp_path):
    import datasets
    from PIL import Image

    pictures = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    ds = datasets.Dataset.from_dict({"picture": pictures, "caption": ["red", "blue"]})
    ds.cast_column("picture", datasets.Image()).to_parquet(tmp_path / "rows.parquet")
    cfg = parse_args(["--dataset_name", str(tmp_path / "rows.parquet"), "--image_root", str(tmp_path),
                      "--no_streaming", "--no_shuffle", "--image_column", "picture", "--no_skip_missing_images",
                      "--source_filter", "*", "--resolution", "8"])
    red = [s["pixel_values"][:, 4, 4] for s in caption_dataset(cfg)][0]
    torch.testing.assert_close(red, torch.tensor([1.0, -1.0, -1.0]))


@pytest.mark.parametrize("skip", [True, False])
def test_skip_missing_images_skips_and_counts_or_stops(tmp_path, skip):
    rows = fixture_rows(3)
    rows[1]["path"] = "images/none.png"
    args = ["--dataset_name", renamed_rows(tmp_path, rows), "--image_root", str(FIXTURE), "--no_streaming",
            "--no_shuffle", "--resolution", "16", "--source_filter", "*",
            "--skip_missing_images" if skip else "--no_skip_missing_images"]
    if not skip:
        with pytest.raises(ValueError, match="cannot read the image of row 1 .images/none.png."):
            list(caption_dataset(parse_args(args)))
        return
    samples = list(caption_dataset(parse_args(args)))
    assert [s["caption"] for s in samples] == [rows[0]["caption"], rows[2]["caption"]]
    assert sum(s["skipped"] for s in samples) == 1


def test_dataset_split_picks_a_local_folders_split(tmp_path):
    rows = fixture_rows(4)
    (tmp_path / "data").mkdir()
    for split, part in (("train", rows[:3]), ("validation", rows[3:])):
        (tmp_path / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    base = ["--dataset_name", str(tmp_path), "--image_root", str(FIXTURE), "--no_streaming", "--no_shuffle",
            "--resolution", "16", "--source_filter", "fixture"]
    got = {split: [s["caption"] for s in caption_dataset(parse_args(base + ["--dataset_split", split]))]
           for split in ("train", "validation")}
    assert got == {"train": [r["caption"] for r in rows[:3]], "validation": [rows[3]["caption"]]}


def test_train_data_dir_is_the_originals_name_for_dataset_name():
    base = ["--image_root", str(FIXTURE), "--no_streaming", "--no_shuffle", "--resolution", "16", "--source_filter",
            "fixture", "--max_train_samples", "3"]
    captions = [[s["caption"] for s in caption_dataset(parse_args(base + [flag, str(FIXTURE)]))]
                for flag in ("--dataset_name", "--train_data_dir")]
    assert captions[0] == captions[1] == [r["caption"] for r in fixture_rows(3)]
    with pytest.raises(ValueError, match="--dataset_name .*captions.jsonl and --train_data_dir .* name two datasets"):
        caption_dataset(parse_args(base + ["--dataset_name", str(FIXTURE / "captions.jsonl"), "--train_data_dir",
                                           str(FIXTURE)]))


@pytest.mark.slow
def test_epochs_tf32_and_logging_dir_shape_a_run(tmp_path, tiny_dir):
    """Without --max_train_steps a run lasts epochs x steps per epoch; --allow_tf32 is set; logs go to --logging_dir;
    --checkpoints_total_limit keeps the newest checkpoints."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    profile = tiny_train_args(validation_steps=0)
    at = profile.index("--max_train_steps")
    args = profile[:at] + profile[at + 2:]
    args += ["--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(tmp_path), "--num_train_epochs",
             "2", "--num_update_steps_per_epoch", "2", "--checkpointing_steps", "1", "--checkpoints_total_limit", "2",
             "--allow_tf32", "--report_to",
             "tensorboard", "--logging_dir", "tb"]
    try:
        assert main(args) == 0
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 4
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("max_grad_norm", [1e-12, 1.0])
def test_max_grad_norm_clips_the_gradient_before_the_step(tmp_path, tiny_dir, max_grad_norm):
    "Clipped to 1e-12, a gradient is far below Adam's epsilon and one step barely moves a weight; at 1 it moves ~lr."
    from safetensors.torch import load_file

    from lpd.tiny import tiny_decomposer

    tiny_decomposer(seed=0).save_pretrained(tmp_path / "init")
    args = tiny_train_args(validation_steps=0) + [
        "--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(tmp_path / "run"), "--max_train_steps",
        "1", "--checkpointing_steps", "100", "--ckpt", str(tmp_path / "init"), "--adam_weight_decay", "0",
        "--learning_rate", "0.001", "--max_grad_norm", str(max_grad_norm)]
    assert main(args) == 0
    start, end = load_file(tmp_path / "init" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    moved = max((end[k] - start[k]).abs().max().item() for k in start)
    assert moved < 1e-6 if max_grad_norm < 1e-6 else moved > 5e-4


@pytest.mark.parametrize("to_none", [False, True])
def test_set_grads_to_none_frees_the_gradients_after_each_step(tmp_path, tiny_dir, monkeypatch, to_none):
    "--set_grads_to_none: after a step the decomposer's gradients are gone (None); without it they are zeros."
    made = []
    real = lpd.train.decomposer_from_config
    monkeypatch.setattr(lpd.train, "decomposer_from_config", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    args = tiny_train_args(validation_steps=0) + [
        "--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(tmp_path), "--max_train_steps", "1",
        "--checkpointing_steps", "100"] + (["--set_grads_to_none"] if to_none else [])
    assert main(args) == 0
    grads = [p.grad for p in made[0].parameters()]
    assert all(g is None for g in grads) if to_none else all(g is not None and not g.any() for g in grads)


def test_scale_lr_and_the_schedule_shape_a_runs_learning_rate(tmp_path, tiny_dir, capsys):
    """--scale_lr and --lr_scheduler reach fit's optimizer and schedule: the rates a run logs are the cosine over its
    --max_train_steps from --learning_rate x --train_batch_size x --gradient_accumulation_steps (one process).
    The same run's progress bar, train_log.jsonl and train_config.json say what ran, in a new --output_dir's new
    parent folders."""
    out = tmp_path / "new" / "run"
    args = run_args(tiny_dir, out, 3, "--learning_rate", "0.001", "--scale_lr", "--lr_scheduler", "cosine",
                    "--train_batch_size", "2", "--gradient_accumulation_steps", "2")
    capsys.readouterr()
    start = time.perf_counter()
    assert main(args) == 0
    wall = time.perf_counter() - start
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    peak = 0.001 * 2 * 2
    assert [r["lr"] for r in log] == pytest.approx([peak * 0.5 * (1 + math.cos(math.pi * s / 3)) for s in (1, 2, 3)])
    elapsed = [r["elapsed_s"] for r in log]  # seconds since the loop began, to the millisecond
    assert all(isinstance(e, float) and e == round(e, 3) for e in elapsed), elapsed
    assert 0 < elapsed[0] <= elapsed[1] <= elapsed[2] < wall, (elapsed, wall)
    ran, saved = (json.loads((out / name).read_text()) for name in ("train_config.json", "config.json"))
    layout = (saved["component_clip"], saved["composition"])  # the saved model's: what ran, the defaults resolved
    assert (ran["component_clip"], ran["composition"]) == layout and None not in layout, (ran, layout)
    bar = capsys.readouterr().err.split("\r")[-1]  # tqdm's last redraw, as the terminal shows it when the run ends
    assert re.match(r"steps: 100%\|.*\| 3/3 \[.*, loss=\d+\.\d{4}, lr=\d\.\d{2}e[+-]\d{2}\]", bar), bar


@pytest.mark.slow  # two lpd-train runs: ~4 s
def test_a_router_and_a_teacher_train_through_lpd_train(tmp_path, tiny_dir):
    """--decomposer_kind router: lpd-train gives the router the empty prompt's T5 states as its blank (diffusers'
    own T5 encoding of "") and trains its per-token target. --route_targets on the original's layout and rule: the
    teacher's texts need the empty prompt's encoding, which lpd-train makes for them."""
    from diffusers import StableDiffusion3Pipeline

    from lpd.decomposer import PromptDecomposer

    router, teacher = tmp_path / "router", tmp_path / "teacher"
    assert main(run_args(tiny_dir, router, 1, "--train_batch_size", "2", "--route_targets", "objects",
                         "--decomposer_kind", "router", "--num_tokens", "512", "--route_weight", "0",
                         "--route_token_weight", "1")) == 0
    stock = StableDiffusion3Pipeline.from_pretrained(tiny_dir)
    empty = stock._get_t5_prompt_embeds(prompt=[""], max_sequence_length=512)[0]
    torch.testing.assert_close(PromptDecomposer.from_pretrained(router).mask_head.router.blank, empty)
    assert "route_tokens" in json.loads((router / "train_log.jsonl").read_text().splitlines()[0])
    assert main(run_args(tiny_dir, teacher, 1, "--train_batch_size", "2", "--route_targets", "objects",
                         "--component_clip", "prompt", "--composition", "mean")) == 0
    assert json.loads((teacher / "train_log.jsonl").read_text().splitlines()[0])["route"] > 0


@pytest.mark.slow  # an lpd-train step in bf16 on the CPU: ~3 s
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_mixed_precision_runs_the_decomposer_under_autocast(tmp_path, tiny_dir, monkeypatch, precision):
    "--mixed_precision reaches accelerate: the prepared decomposer's layers run under bf16 autocast, and only then."
    seen, real = set(), lpd.train.decomposer_from_config

    def recorded(*a, **k):
        decomposer = real(*a, **k)
        for layer in decomposer.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.register_forward_pre_hook(lambda *_: seen.add(
                    torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None))
        return decomposer

    monkeypatch.setattr(lpd.train, "decomposer_from_config", recorded)
    args = run_args(tiny_dir, tmp_path, 1, "--train_batch_size", "2", "--mixed_precision", precision)
    assert main(args) == 0
    assert seen == {torch.bfloat16 if precision == "bf16" else None}


@pytest.mark.slow  # lpd-cache, then an lpd-train run: ~4 s
def test_a_run_from_an_encoding_cache_encodes_nothing(tmp_path, tiny_dir, monkeypatch, capsys):
    """--encoding_cache: the captions' encodings and the images' latents come from the cache, no encoder runs; the
    sum rule, whose base is the empty prompt's T5 states at --num_tokens (not in the cache), is refused."""
    flags = tiny_train_args(validation_steps=0) + ["--pretrained_model_name_or_path", str(tiny_dir)]
    lpd.train.cache_encodings(tmp_path / "cache", flags)

    def no_encoder(*args, **kwargs):
        raise AssertionError("an encoder ran")

    monkeypatch.setattr(lpd.train, "encode_long_prompt", no_encoder)
    monkeypatch.setattr(AutoencoderKL, "encode", no_encoder)
    args = run_args(tiny_dir, tmp_path / "run", 2, "--train_batch_size", "2", "--encoding_cache",
                    str(tmp_path / "cache"))
    assert main(args) == 0
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(args + ["--output_dir", str(tmp_path / "sum"), "--composition", "sum"]) == 2
    assert "--composition sum needs the empty prompt's T5 states at --num_tokens 16" in capsys.readouterr().err


@pytest.mark.slow  # an lpd-train step: ~2 s
@pytest.mark.parametrize("clip,rule", [("empty", "mean"), ("prompt", "sum")])
def test_each_layout_and_rule_trains_through_lpd_train(tmp_path, tiny_dir, clip, rule):
    """T5-only components (--component_clip empty) need the empty prompt's CLIP part, and the sum rule its velocity:
    lpd-train makes that encoding for either, with no teacher to ask for it. The run says what it ran."""
    args = run_args(tiny_dir, tmp_path, 1, "--train_batch_size", "2", "--component_clip", clip, "--composition", rule)
    assert main(args) == 0
    ran = json.loads((tmp_path / "train_config.json").read_text())
    assert (ran["component_clip"], ran["composition"], ran["route_targets"]) == (clip, rule, "none")
