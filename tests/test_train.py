"""lpd.train on the tiny SD3 and the fixture set: learning, frozen parts, checkpoints, resume, tracking, bad input."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from accelerate import Accelerator

from lpd.checkpoints import read_state
from lpd.core import repo_root
from lpd.data import fixture_heldout_batch
from lpd.decomposer import PromptDecomposer
from lpd.infer import main as infer_main
from lpd.tiny import tiny_decomposer
from lpd.train import decomposer_from_config, heldout_loss, load_frozen, main, parse_args, training_loss

from helpers import run_args, tiny_train_args

FIXTURE = repo_root() / "data" / "fixtures" / "longalign"
TINY = tiny_train_args(validation_steps=0, validation_inference_steps=2)  # data/profiles/tiny.yaml, no validation


@pytest.mark.slow
def test_thirty_steps_lower_the_heldout_composite_loss(tmp_path, tiny_dir):
    init = tmp_path / "init"
    tiny_decomposer(seed=0).save_pretrained(init)
    args = TINY + ["--pretrained_model_name_or_path", str(tiny_dir), "--ckpt", str(init), "--output_dir",
                   str(tmp_path / "run"), "--max_train_steps", "30", "--checkpointing_steps", "100"]
    cfg = parse_args(args)
    frozen = load_frozen(cfg, Accelerator(cpu=True))
    batch = fixture_heldout_batch()
    assert len(batch["captions"]) == 2
    before = heldout_loss(frozen, PromptDecomposer.from_pretrained(init), batch, cfg)
    assert main(args) == 0
    after = heldout_loss(frozen, PromptDecomposer.from_pretrained(tmp_path / "run"), batch, cfg)
    print(f"\nheld-out composite flow-matching loss (2 unseen fixture images, 8 fixed draws): "
          f"before {before:.4f} -> after 30 steps {after:.4f} ({100 * (after - before) / before:+.1f}%)")
    assert after < before
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 31)) and {"loss", "diff", "lr"} <= set(log[0])
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final_loss"]
    assert final == pytest.approx(sum(r["loss"] for r in log[-10:]) / 10)  # the mean of the last 10 steps' losses


def test_only_the_decomposer_learns(frozen_tiny):
    "Transformer, VAE and the three text encoders get no gradient and do not change; the decomposer does."
    cfg, frozen = frozen_tiny
    parts = {n: getattr(frozen.pipe, n) for n in ("transformer", "vae", "text_encoder", "text_encoder_2",
                                                   "text_encoder_3")}
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in parts.items()}
    dec = tiny_decomposer()
    opt = torch.optim.AdamW(dec.parameters(), lr=1e-2)
    batch = fixture_heldout_batch()
    for _ in range(2):
        training_loss(frozen, dec, batch, cfg, batch["captions"])["loss"].backward()
        opt.step()
    for name, module in parts.items():
        assert all(p.grad is None and not p.requires_grad for p in module.parameters()), name
        assert all(torch.equal(v, before[name][k]) for k, v in module.state_dict().items()), name
    assert all(p.grad is not None for p in dec.parameters())


def test_precondition_outputs_picks_the_references_terms(frozen_tiny):
    "0 / 1: the velocity / x0 loss (diff); 2: kd alone; 3: both, and `loss` is their sum (same batch, same noise)."
    cfg, frozen = frozen_tiny
    dec, batch = tiny_decomposer(), fixture_heldout_batch()
    got = {p: training_loss(frozen, dec, batch, dataclasses.replace(cfg, precondition_outputs=p), batch["captions"],
                            torch.Generator().manual_seed(0)) for p in range(4)}
    assert [sorted(set(got[p]) - {"loss", "similarity"}) for p in range(4)] == [["diff"], ["diff"], ["kd"],
                                                                                ["diff", "kd"]]
    assert torch.allclose(got[3]["loss"], got[3]["diff"] + got[3]["kd"])
    assert torch.allclose(got[3]["kd"], got[2]["kd"]) and torch.allclose(got[3]["diff"], got[1]["diff"])
    assert not torch.allclose(got[0]["diff"], got[1]["diff"])  # the velocity and the x0 targets differ


@pytest.mark.slow  # an lpd-train run: ~2.5 s
def test_kd_with_gradient_accumulation_runs_end_to_end(tiny_dir, tmp_path):
    args = run_args(tiny_dir, tmp_path, 2, "--precondition_outputs", "3", "--gradient_accumulation_steps", "2")
    assert main(args) == 0
    last = json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[-1])
    assert {"kd", "diff"} <= set(last) and last["step"] == 2


def run_cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "lpd.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_killed_during_checkpoint_save_resumes_from_last_complete(tmp_path, tiny_dir):
    "SIGKILL while checkpoint-4 is being written: resume picks checkpoint-2 and the run ends at step 6."
    out = tmp_path / "run"
    args = TINY + ["--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(out), "--max_train_steps",
                   "6", "--checkpointing_steps", "2"]
    # the first run is slowed inside the save (after the accelerate state, before the rename) so the kill lands there
    slow = ("import sys, time, lpd.decomposer as d; f = d.PromptDecomposer.save_pretrained\n"
            "def slow(self, *a, **k):\n    f(self, *a, **k)\n    time.sleep(30 if '.tmp' in str(a[0]) and "
            "'checkpoint-4' in str(a[0]) else 0)\nd.PromptDecomposer.save_pretrained = slow\n"
            "from lpd.train import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", slow, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out / ".checkpoint-4.tmp" / "model.safetensors").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    resumed = run_cli(args + ["--resume_from_checkpoint", "latest"])
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-2000:]
    assert "resumed from" in stderr and "checkpoint-2" in stderr
    assert json.loads(stdout.strip().splitlines()[-1])["global_step"] == 6
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert not list(out.glob(".checkpoint-*"))
    state = json.loads((out / "checkpoint-6" / "train_state.json").read_text())
    assert state["global_step"] == 6
    # the checkpoint and the final weights load with lpd-infer
    for ckpt in (out / "checkpoint-4", out / "model.safetensors", out):
        extra = ["--num_tokens", "16", "--decomposer_heads", "4", "--decomposer_layers", "2"]
        assert infer_main(["--pretrained_model_name_or_path", str(tiny_dir), "--decomposer_ckpt", str(ckpt),
                           "--prompt", "a red circle", "--output_dir", str(tmp_path / "img"),
                           "--num_inference_steps", "2", "--save_decompose", *extra]) == 0
        assert (tmp_path / "img" / "component_3.png").exists()


@pytest.mark.slow
def test_resume_continues_the_same_run(tmp_path, tiny_dir, capsys, caplog):
    """6 steps in one go and 4 + resume to 6 give the same weights (data position, RNG, caption dropout, optimizer);
    the resumed run's progress bar starts at step 4; resuming a finished run trains no step and reports no loss."""
    common = TINY + ["--pretrained_model_name_or_path", str(tiny_dir), "--checkpointing_steps", "4",
                     "--component_dropout", "0.5"]
    assert main(common + ["--output_dir", str(tmp_path / "a"), "--max_train_steps", "6"]) == 0
    assert main(common + ["--output_dir", str(tmp_path / "b"), "--max_train_steps", "4"]) == 0
    capsys.readouterr()
    assert main(common + ["--output_dir", str(tmp_path / "b"), "--max_train_steps", "6",
                          "--resume_from_checkpoint", "latest"]) == 0
    assert f"resumed from {tmp_path / 'b' / 'checkpoint-4'} at step 4" in caplog.text
    redraws = capsys.readouterr().err.split("\r")
    assert any("| 4/6 [" in r for r in redraws) and not any("| 0/6 [" in r or "| 1/6 [" in r for r in redraws)
    assert any("| 6/6 [" in r for r in redraws)
    a = PromptDecomposer.from_pretrained(tmp_path / "a").state_dict()
    b = PromptDecomposer.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    done = common + ["--output_dir", str(tmp_path / "a"), "--max_train_steps", "4", "--resume_from_checkpoint",
                     str(tmp_path / "a" / "checkpoint-4")]
    assert main(done) == 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["final_loss"] is None


@pytest.mark.slow
def test_offline_wandb_run_holds_scalars_and_validation_images(tmp_path, tiny_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = run_args(tiny_dir, tmp_path, 2, "--report_to", "wandb", "--validation_steps", "2",
                    "--validation_prompt", "a red circle above a blue square", "--wandb_run_name", "tiny-test")
    assert main(args) == 0
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = (runs[0] / next(p.name for p in runs[0].iterdir() if p.suffix == ".wandb")).read_bytes()
    assert b"loss" in data and b"lr" in data
    media = list(runs[0].rglob("*.png"))
    assert len(media) == 5, media  # composite + 4 components
    assert len(list((tmp_path / "validation" / "step-000002").glob("*.png"))) == 5


@pytest.mark.slow  # an lpd-train run with validation: ~2.5 s
def test_tensorboard_scalars_and_judged_validation(tmp_path, tiny_dir):
    """--report_to tensorboard: the event files hold each optimizer step's loss and rate at that step; with
    --judge_prompts, the validation step also judges that many held-out prompts into judge_log.jsonl."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = run_args(tiny_dir, tmp_path, 2, "--report_to", "tensorboard", "--validation_steps", "2", "--judge_prompts",
                    "2")
    assert main(args) == 0
    judged = [json.loads(line) for line in (tmp_path / "judge_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in judged] == [2] and 0 <= judged[0]["judge_presence"] <= 1, judged
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert events
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    for key in ("loss", "lr"):
        got = [(e.step, e.value) for e in scalars.Scalars(key)]
        assert got == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in log], key


def test_rows_without_caption_or_readable_image_are_skipped_and_counted(tmp_path, tiny_dir):
    rows = [json.loads(line) for line in (FIXTURE / "captions.jsonl").read_text().splitlines()][:8]
    rows[1]["path"] = "images/does-not-exist.png"
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG broken")
    rows[2]["path"] = str(tmp_path / "images" / "broken.png")
    rows[3]["caption"] = ""  # rows without a usable caption are skipped and counted too, as the original does
    rows[4] = {k: v for k, v in rows[4].items() if k != "caption"}
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = list(TINY)
    args[args.index("--dataset_name") + 1] = str(tmp_path / "rows.jsonl")
    args += ["--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(tmp_path / "run"),
             "--max_train_steps", "3", "--checkpointing_steps", "3", "--train_batch_size", "8"]
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_skipped_rows"] == 4
    # the 8 rows are one batch: step 3 trains on the first batch of the third epoch; the bad rows are counted once
    state = read_state(tmp_path / "run" / "checkpoint-3")
    assert (state["global_step"], state["epoch"], state["consumed"], state["num_skipped_rows"]) == (3, 2, 1, 4)


BAD = {
    "missing image_root": (["--image_root", "/nonexistent/images"], "--image_root /nonexistent/images is not a dir"),
    "no image_root": (["--image_root", None], "--image_root is required"),
    "filter leaves no rows": (["--source_filter", "coco"], "no training rows left after --source_filter 'coco'"),
    "bad report_to": (["--report_to", "mlflow"], "--report_to must be"),
    "bad precondition": (["--precondition_outputs", "5"], "--precondition_outputs must be 0, 1, 2 or 3"),
    "bad token_length": (["--token_length", "600"],
                         "--token_length (--max_sequence_length) must be in [1, 512], got 600"),
    "bad max_sequence_length": (["--max_sequence_length", "600"],
                                "--token_length (--max_sequence_length) must be in [1, 512], got 600"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_clear_error(case, tmp_path, tiny_dir, capsys):
    changes, expected = BAD[case]
    args = TINY + ["--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(tmp_path),
                   "--max_train_steps", "1"]
    flag, value = changes
    if flag in args:
        i = args.index(flag)
        args = args[:i] + args[i + 2:]
    args += [flag, value] if value is not None else []
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lpd-train: error: ") and expected in err[-1], err


def test_all_images_missing_is_a_clear_error(tmp_path, tiny_dir, capsys):
    (tmp_path / "empty").mkdir()
    args = TINY + ["--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(tmp_path / "run"),
                   "--max_train_steps", "1"]
    args[args.index("--image_root") + 1] = str(tmp_path / "empty")
    assert main(args) == 2
    assert "all 24 rows were skipped" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.slow  # an lpd-train run: ~2.5 s
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_dir, monkeypatch, capsys):
    import lpd.train as train

    real, calls = train.training_loss, []

    def poisoned(*a, **k):
        calls.append(1)
        out = real(*a, **k)
        return out if len(calls) < 4 else {**out, "loss": out["loss"] * float("nan")}

    monkeypatch.setattr(train, "training_loss", poisoned)
    args = TINY + ["--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", str(tmp_path),
                   "--max_train_steps", "6", "--checkpointing_steps", "2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "loss is not finite at step 4" in err and "checkpoint-2" in err
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "model.safetensors").exists()


@pytest.mark.slow
def test_two_processes_train_on_disjoint_shards(tmp_path, tiny_dir):
    "DDP on the CPU (gloo, via torchrun): 2 ranks, disjoint data in every step, one averaged loss curve."
    out = tmp_path / "ddp"
    args = run_args(tiny_dir, out, 3, "--train_batch_size", "4", "--log_data_ids")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "lpd.train",
                           *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["num_processes"] == 2
    ranks = [[json.loads(line)["ids"] for line in (out / f"data_ids.rank{r}.jsonl").read_text().splitlines()]
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    assert all(not set(a) & set(b) for a, b in zip(*ranks))
    assert len({i for rank in ranks for ids in rank for i in ids}) == 24  # one epoch: every row exactly once
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("profile", ["sd35_medium_minimal", "tiny"])
def test_shipped_profiles_parse(profile):
    cfg = parse_args(["--profile", str(repo_root() / "data" / "profiles" / f"{profile}.yaml"), "--seed", "7"])
    assert cfg.seed == 7  # the command line wins over the profile
    if profile == "sd35_medium_minimal":  # the reference's section 6 command
        assert (cfg.gradient_accumulation_steps, cfg.learning_rate, cfg.mixed_precision) == (8, 1e-5, "bf16")
    else:
        assert (cfg.streaming, cfg.source_filter, cfg.resolution) == (False, "fixture", 64)


@pytest.mark.slow  # an lpd-train run with workers: ~7 s
def test_streaming_with_workers_mixed_precision_and_gradient_checkpointing(tmp_path, tiny_dir):
    args = run_args(tiny_dir, tmp_path, 2, "--dataloader_num_workers", "2", "--mixed_precision", "bf16",
                    "--gradient_checkpointing", "--lr_scheduler", "cosine", "--lr_warmup_steps", "1")
    args += ["--streaming"]  # over the tiny profile's streaming: false
    assert main(args) == 0
    assert json.loads((tmp_path / "train_config.json").read_text())["streaming"] is True
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


@pytest.mark.slow  # an lpd-train run: ~2.5 s
def test_ckpt_takes_the_originals_bare_file_and_writes_its_layout(tmp_path, tiny_dir, capsys):
    "--ckpt with the original's model.safetensors (no config): built from the flags, trained, saved in its key layout."
    from safetensors.torch import load_file, save_file

    from original import TextDecomposer, load_like_the_original

    torch.manual_seed(3)
    original = TextDecomposer(num_tokens=16, width=128, heads=4, layers=2)  # TINY's flags; 4 components by default
    save_file(original.state_dict(), tmp_path / "model.safetensors")
    args = run_args(tiny_dir, tmp_path / "run", 1, "--ckpt", str(tmp_path / "model.safetensors"),
                    "--learning_rate", "0", "--adam_weight_decay", "0")
    assert main(args) == 0
    final = load_file(tmp_path / "run" / "model.safetensors")
    start = load_file(tmp_path / "model.safetensors")
    assert final.keys() == start.keys() and all(torch.equal(final[k], start[k]) for k in start)  # lr 0: unchanged
    load_like_the_original(tmp_path / "run" / "model.safetensors", num_tokens=16, width=128, heads=4, layers=2)
    capsys.readouterr()
    assert main(args[:-4] + ["--decomposer_layers", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds num_layers=2, expected num_layers (--decomposer_layers)=3" in err


@pytest.mark.slow  # two lpd-train runs: ~3 s
def test_no_shuffle_reads_in_stream_order(tmp_path, tiny_dir):
    "--no_shuffle: the batches are the rows in file order, as the original reads them (lpd shuffles by default)."
    import hashlib

    rows = [json.loads(line) for line in (FIXTURE / "captions.jsonl").read_text().splitlines()]
    in_order = [hashlib.sha1(r["caption"].encode()).hexdigest()[:10] for r in rows if r["source"] == "fixture"]
    for shuffle in ([], ["--no_shuffle"]):
        out = tmp_path / ("stream" if shuffle else "shuffled")
        assert main(run_args(tiny_dir, out, 2, "--log_data_ids", *shuffle)) == 0
        seen = [i for line in (out / "data_ids.rank0.jsonl").read_text().splitlines() for i in json.loads(line)["ids"]]
        assert (seen == in_order[:8]) == bool(shuffle)


SECTION_6 = """
  --pretrained_model_name_or_path /ABS_PATH/long-prompt-decomposer-sd35/weights/sd3.5-medium
  --output_dir /ABS_PATH/long-prompt-decomposer-sd35/logs/lpd_sd35_minimal
  --image_root /ABS_PATH/long-prompt-decomposer-sd35/data/longalign_images
  --source_filter coco --resolution 512 --train_batch_size 1 --gradient_accumulation_steps 8 --learning_rate 1e-5
  --max_train_steps 2000 --checkpointing_steps 200 --validation_steps 200 --num_components 4 --num_tokens 128
  --decomposer_heads 32 --decomposer_layers 6 --token_length 512 --report_to wandb --tracker_project_name lpd_sd3
  --wandb_run_name sd35_coco_minimal --wandb_entity <YOUR_WANDB_ENTITY> --dataloader_num_workers 0
  --mixed_precision bf16
"""  # the seed README's section 6 command, flag for flag


def test_the_originals_section_6_flags_parse_as_written():
    cfg = parse_args(SECTION_6.split())
    assert (cfg.num_components, cfg.num_tokens, cfg.decomposer_heads, cfg.decomposer_layers) == (4, 128, 32, 6)
    assert cfg.max_sequence_length == 512  # --token_length, the original's name (parsing fails without the alias)
    assert (cfg.gradient_accumulation_steps, cfg.learning_rate, cfg.max_train_steps, cfg.wandb_entity) == (
        8, 1e-5, 2000, "<YOUR_WANDB_ENTITY>")
    assert cfg.dataset_name == "luping-liu/LongAlign" and cfg.streaming  # the original's data defaults


def test_the_originals_default_args_profiles_are_read(tmp_path):
    "The original's profile format, {'default_args': [...]}, under the command line."
    profile = tmp_path / "lpd_ella_t5_sd3.json"
    profile.write_text(json.dumps({"default_args": ["--num_tokens", "64", "--no_streaming", "--seed", "1"]}))
    cfg = parse_args(["--profile", str(profile), "--seed", "2"])
    assert (cfg.num_tokens, cfg.streaming, cfg.seed) == (64, False, 2)


@pytest.fixture(scope="module")
def frozen_tiny(tiny_dir):
    cfg = parse_args(TINY + ["--pretrained_model_name_or_path", str(tiny_dir), "--output_dir", "unused"])
    return cfg, load_frozen(cfg, Accelerator(cpu=True))


def test_timesteps_follow_the_sd3_density(frozen_tiny):
    "sigma is drawn from the logit-normal density (spread over (0, 1)), and noisy = (1 - sigma) x0 + sigma noise."
    from lpd.train import sample_noisy_latents

    cfg, frozen = frozen_tiny
    pixels = torch.rand(64, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    latents, noise, noisy, timesteps, sigmas = sample_noisy_latents(frozen, {"pixel_values": pixels}, cfg,
                                                                    torch.Generator().manual_seed(1))
    shift = frozen.noise_scheduler.config.shift  # the scheduler's shift moves the median u = 0.5 to this sigma
    s = sigmas.flatten()
    assert 0 < s.min() and s.max() < 1 and s.std() > 0.1
    assert abs(s.median() - shift * 0.5 / (1 + (shift - 1) * 0.5)) < 0.1
    torch.testing.assert_close(timesteps.float(), s * 1000, atol=1e-2, rtol=0)
    torch.testing.assert_close(noisy, (1 - sigmas) * latents + sigmas * noise)


@pytest.mark.parametrize("precondition", [0, 1])
def test_the_true_velocity_has_zero_loss(frozen_tiny, monkeypatch, precondition):
    "A transformer that predicts the true velocity (noise - x0) gets loss 0: the targets and x0 = noisy - sigma v."
    import dataclasses

    from lpd.train import flow_matching_loss, sample_noisy_latents

    cfg, frozen = frozen_tiny
    cfg = dataclasses.replace(cfg, precondition_outputs=precondition)
    batch = fixture_heldout_batch()
    latents, noise, *_ = sample_noisy_latents(frozen, batch, cfg, torch.Generator().manual_seed(3))
    velocity = noise - latents

    def oracle(hidden_states, **kwargs):  # every (component, sample) row gets its sample's true velocity
        return (velocity.repeat(hidden_states.shape[0] // velocity.shape[0], 1, 1, 1),)

    monkeypatch.setattr(frozen.pipe.transformer, "forward", oracle)
    loss = training_loss(frozen, tiny_decomposer(), batch, cfg, batch["captions"], torch.Generator().manual_seed(3))
    assert loss["diff"].item() < 1e-10
    wrong = flow_matching_loss(-velocity, latents, noise, torch.full((2, 1, 1, 1), 0.5), precondition_outputs=1)
    assert wrong["diff"].item() > 0.1  # and a wrong prediction is not free


def test_every_decomposer_tensor_is_trained(tmp_path, tiny_dir):
    "After two optimizer steps of lpd-train, every tensor of the decomposer has moved (the optimizer holds them all)."
    from safetensors.torch import load_file

    tiny_decomposer(seed=0).save_pretrained(tmp_path / "init")
    assert main(run_args(tiny_dir, tmp_path / "run", 2, "--ckpt", str(tmp_path / "init"))) == 0
    start, end = load_file(tmp_path / "init" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    frozen = [k for k in start if torch.equal(start[k], end[k])]
    assert frozen == [], frozen


@pytest.mark.slow
def test_compile_compiles_the_frozen_blocks_and_keeps_loss_and_gradients(tiny_dir):
    "--compile: the frozen transformer's blocks compiled in place; loss and decomposer gradients as eager."
    cfg = parse_args(run_args(tiny_dir, "unused", 1))
    batch = fixture_heldout_batch()
    results = []
    for compiled in (False, True):
        cfg.compile = compiled
        frozen = load_frozen(cfg, Accelerator(cpu=True))
        blocks = frozen.pipe.transformer.transformer_blocks
        assert all((b._compiled_call_impl is not None) == compiled for b in blocks)
        decomposer = decomposer_from_config(cfg, frozen.pipe.transformer.config.joint_attention_dim)
        decomposer.load_state_dict(tiny_decomposer(seed=0).state_dict())
        loss = training_loss(frozen, decomposer, batch, cfg, batch["captions"], torch.Generator().manual_seed(0))
        loss["loss"].backward()
        results.append((loss["loss"].item(), [p.grad for p in decomposer.parameters()]))
    (eager, eager_grads), (compiled, compiled_grads) = results
    assert abs(eager - compiled) < 1e-5 and eager > 0
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(eager_grads, compiled_grads))


def test_decomposer_flags_build_what_they_name():
    "--decomposer_heads, _layers, _attention_mask, _context_kernel, _kind reach the decomposer, as a direct build."
    cfg = parse_args(["--num_components", "3", "--num_tokens", "5", "--decomposer_heads", "4", "--decomposer_layers",
                      "2", "--decomposer_attention_mask", "--decomposer_context_kernel", "3"])
    built = decomposer_from_config(cfg, 32)
    expected = PromptDecomposer(num_components=3, num_tokens=5, width=32, num_heads=4, num_layers=2,
                                use_attention_mask=True, context_kernel=3, kind="resampler")
    assert dict(built.config) == dict(expected.config)
    assert {k: tuple(v.shape) for k, v in built.state_dict().items()} == {
        k: tuple(v.shape) for k, v in expected.state_dict().items()}
    router = decomposer_from_config(parse_args(["--num_components", "3", "--num_tokens", "5", "--decomposer_kind",
                                                "router"]), 32)
    assert {k: tuple(v.shape) for k, v in router.state_dict().items()} == {
        "mask_head.router.blank": (5, 32), "mask_head.router.scores.weight": (4, 32),
        "mask_head.router.scores.bias": (4,)}
    assert decomposer_from_config(parse_args([]), 32).config.context_kernel == 0  # the original's: no context
    with pytest.raises(ValueError, match="context_kernel must be 0 or an odd"):
        decomposer_from_config(parse_args(["--decomposer_context_kernel", "4"]), 32)


def test_compile_has_one_name_and_accepts_its_earlier_one():
    "`--compile` sets TrainConfig.compile, as lpd-eval's flag; `--compile_transformer` (its earlier name) still does."
    assert [parse_args(argv).compile for argv in ([], ["--compile"], ["--compile_transformer"])] == [False, True, True]
