"""The original's decomposer, exactly: its checkpoint reproduces its outputs in lpd, lpd's checkpoints load in it, and
`lpd-infer` renders an original checkpoint with the original's section 7 command and defaults."""
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import StableDiffusion3Pipeline
from PIL import Image
from safetensors.torch import load_file, save_file

from lpd.core import fixture_path
from lpd.decomposer import PromptDecomposer, load_decomposer
from lpd.infer import build_parser, main
from lpd.pipeline import PromptDecomposePipeline
from original import TextDecomposer, load_like_the_original, render_like_the_original

FIXTURE = fixture_path("original_decomposer")
FIXTURE_FLAGS = dict(num_components=3, num_tokens=5, decomposer_heads=4, decomposer_layers=2)  # width 64 = its T5


def fixture_outputs():
    io = load_file(FIXTURE / "io.safetensors")
    return io["t5_embeds"], [io[f"component_{k}"] for k in range(3)]


@pytest.mark.parametrize("where", ["file", "folder"])
def test_the_originals_checkpoint_reproduces_its_outputs(where, tmp_path):
    "The file the original code wrote, given as a file or as a folder holding only it, gives its outputs to 1e-5."
    path = FIXTURE / "model.safetensors"
    if where == "folder":  # e.g. the original's checkpoint-2000/ (accelerate state + model.safetensors, no config)
        shutil.copy(path, tmp_path / "model.safetensors")
        path = tmp_path
    dec = load_decomposer(path, text_dim=64, **FIXTURE_FLAGS)
    t5, expected = fixture_outputs()
    with torch.no_grad():
        parts = dec(t5)
    assert len(parts) == 3
    for part, want in zip(parts, expected):
        assert part.shape == (2, 5, 64)
        torch.testing.assert_close(part, want, atol=1e-5, rtol=0)


def test_the_restated_original_is_the_original():
    "tests/original.py (the other side of the round trips below) computes the fixture's outputs too."
    dec = load_like_the_original(FIXTURE / "model.safetensors", num_components=3, num_tokens=5, width=64, heads=4,
                                 layers=2)
    t5, expected = fixture_outputs()
    with torch.no_grad():
        for part, want in zip(dec(t5), expected):
            torch.testing.assert_close(part, want, atol=1e-5, rtol=0)


def test_lpd_checkpoints_have_the_originals_keys_and_load_in_it(tmp_path):
    "At equal hyperparameters lpd writes the fixture's key names and shapes (+ config.json); the original loads it."
    torch.manual_seed(1)
    ours = PromptDecomposer(num_components=3, num_tokens=5, width=64, num_heads=4, num_layers=2)
    ours.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    written = load_file(tmp_path / "model.safetensors")
    reference = load_file(FIXTURE / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in written.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    assert json.loads((tmp_path / "config.json").read_text())["num_heads"] == 4
    theirs = load_like_the_original(tmp_path / "model.safetensors", num_components=3, num_tokens=5, width=64,
                                    heads=4, layers=2)
    t5 = torch.randn(2, 9, 64)
    with torch.no_grad():
        for a, b in zip(ours(t5), theirs(t5)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_defaults_are_the_originals_1_210_277_888_parameters():
    with torch.device("meta"):
        ours, theirs = PromptDecomposer(), TextDecomposer()
    assert sum(p.numel() for p in ours.parameters()) == 1_210_277_888
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


def test_components_are_independent():
    "Moving component 0's latents leaves the other components' outputs exactly as they were."
    torch.manual_seed(0)
    dec = PromptDecomposer(num_components=4, num_tokens=6, width=32, num_heads=4, num_layers=3).eval()
    t5 = torch.randn(2, 10, 32)
    with torch.no_grad():
        before = dec(t5)
        dec.mask_head.connector.latents[0] += 1.0
        after = dec(t5)
    assert not torch.equal(after[0], before[0])
    assert all(torch.equal(a, b) for a, b in zip(after[1:], before[1:]))


def test_with_the_mask_on_padded_positions_change_nothing():
    "use_attention_mask: whatever sits at padded T5 positions, no output moves; off (the default), they are read."
    torch.manual_seed(0)
    off = PromptDecomposer(num_components=3, num_tokens=4, width=32, num_heads=4, num_layers=2).eval()
    on = PromptDecomposer(num_components=3, num_tokens=4, width=32, num_heads=4, num_layers=2, use_attention_mask=True)
    on.load_state_dict(off.state_dict())
    t5, mask = torch.randn(2, 12, 32), torch.ones(2, 12, dtype=torch.long)
    mask[0, 7:], mask[1, 10:] = 0, 0
    noisy = t5 + 50.0 * (1 - mask)[..., None] * torch.randn_like(t5)
    with torch.no_grad():
        for clean_part, noisy_part in zip(on(t5, mask), on(noisy, mask)):
            torch.testing.assert_close(noisy_part, clean_part, atol=1e-5, rtol=0)
        torch.testing.assert_close(on(t5, mask)[2][:1], on(t5[:1, :7], mask[:1, :7])[2], atol=1e-5, rtol=0)
        assert not torch.allclose(off(noisy, mask)[0], off(t5, mask)[0], atol=1e-3)


@pytest.mark.parametrize("flags, message", [
    ({}, "holds num_components=3, expected num_components (--num_components)=4"),
    (dict(num_components=3), "holds num_tokens=5, expected num_tokens (--num_tokens)=128"),
    (dict(FIXTURE_FLAGS, decomposer_layers=3), "holds num_layers=2, expected num_layers (--decomposer_layers)=3"),
])
def test_shape_disagreements_are_one_line_naming_the_flag(flags, message):
    with pytest.raises(ValueError) as info:
        load_decomposer(FIXTURE / "model.safetensors", text_dim=64, **flags)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_width_other_than_the_models_t5_is_named():
    with pytest.raises(ValueError, match="holds width=64, expected width \\(--decomposer_width\\)=128"):
        load_decomposer(FIXTURE / "model.safetensors", text_dim=128, **FIXTURE_FLAGS)
    with pytest.raises(ValueError, match="--decomposer_width 64 differs from the model's T5 width 128"):
        load_decomposer(FIXTURE / "model.safetensors", text_dim=128, decomposer_width=64, **FIXTURE_FLAGS)


def test_infer_defaults_are_the_originals_section_7():
    "The original's defaults; guidance is left to the pipeline, which gives a mean-rule decomposer the original's 4.5."
    args = build_parser().parse_args(["--prompt", "x"])
    assert (args.num_inference_steps, args.seed, args.negative_prompt, args.max_sequence_length) == (20, 42, "", 512)
    assert (args.guidance_scale, args.composition, args.component_clip, args.negative_branch) == (None,) * 4
    original = PromptDecomposePipeline.composition_settings(SimpleNamespace(decomposer=None))
    assert original == ("mean", "prompt", "per_component", 4.5)


def original_checkpoint(tiny_dir, folder, seed=0):
    "A checkpoint folder as the original writes it for the tiny SD3: bare model.safetensors, original defaults."
    torch.manual_seed(seed)
    width = json.loads((tiny_dir / "transformer" / "config.json").read_text())["joint_attention_dim"]
    original = TextDecomposer(width=width)  # 4 components x 128 tokens, 32 heads, 6 layers: the original's defaults
    folder.mkdir(parents=True)
    save_file(original.state_dict(), folder / "model.safetensors")
    return folder


@pytest.mark.slow  # over 5 s on 2 cores
def test_section_7_command_renders_what_the_original_renders(tiny_dir, tmp_path):
    """The seed README's section 7 command, as written (paths to the tiny SD3, CPU/fp32), on a checkpoint folder the
    original wrote: lpd-infer's composite is the original's loop's composite (same noise), and 4 components."""
    ckpt = original_checkpoint(tiny_dir, tmp_path / "logs" / "lpd_sd35_minimal" / "checkpoint-2000")
    prompt = "A cinematic long prompt about a red lighthouse on a rocky shore at dusk, waves below, gulls above."
    argv = ["--pretrained_model_name_or_path", str(tiny_dir), "--decomposer_ckpt", str(ckpt), "--prompt", prompt,
            "--negative_prompt", "", "--output_dir", str(tmp_path / "out"), "--save_decompose",
            "--num_inference_steps", "20", "--guidance_scale", "4.5", "--max_sequence_length", "512",
            "--dtype", "fp32", "--device", "cpu"]
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "component_0.png", "component_1.png", "component_2.png", "component_3.png", "compose.png"]
    ours = np.asarray(Image.open(tmp_path / "out" / "compose.png"), dtype=np.int16)
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_dir)
    decomposer = load_like_the_original(ckpt / "model.safetensors", width=pipe.transformer.config.joint_attention_dim)
    size = pipe.default_sample_size * pipe.vae_scale_factor  # the tiny model's native 64 px (< the original's 512)
    their_latents, theirs = render_like_the_original(pipe, decomposer, prompt, height=size, width=size)
    assert ours.shape == theirs.shape == (size, size, 3)
    assert np.abs(ours - theirs).max() <= 1, np.abs(ours - theirs).max()
    # the random tiny SD3 barely reacts to text in pixels; its latents do (moving one component's latents by 0.5
    # moves these by ~1e-2), so the same checkpoint through lpd's pipeline must match the original's at 1e-4
    text_dim = pipe.transformer.config.joint_attention_dim
    lpd_pipe = PromptDecomposePipeline.from_pretrained(tiny_dir, decomposer=load_decomposer(ckpt, text_dim))
    our_latents = lpd_pipe(prompt, height=size, width=size, num_inference_steps=20, guidance_scale=4.5,
                           output_type="latent", generator=torch.Generator().manual_seed(42)).images
    torch.testing.assert_close(our_latents, their_latents, atol=1e-4, rtol=0)


@pytest.mark.slow  # an lpd-infer render in bf16 on the CPU: ~3 s
def test_the_decomposer_follows_dtype(tiny_dir, tmp_path, monkeypatch):
    "--dtype bf16 casts the decomposer like the rest of the pipeline (the original kept it in fp32)."
    import lpd.pipeline as pipeline

    seen = []
    real = pipeline.load_decomposer
    monkeypatch.setattr(pipeline, "resolve_dtype", lambda name, device: torch.bfloat16)  # CPU would fall back to fp32
    monkeypatch.setattr(pipeline, "load_decomposer", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    argv = ["--pretrained_model_name_or_path", str(tiny_dir), "--prompt", "a red circle", "--output_dir",
            str(tmp_path), "--num_inference_steps", "2", "--dtype", "bf16", "--device", "cpu"]
    assert main(argv) == 0
    assert seen[0].dtype == torch.bfloat16


def test_default_size_is_512_for_sd35_and_native_for_smaller_models(tmp_path, tiny_dir):
    "SD3.5 Medium's configs (native 1024 px) give the original's 512; the tiny SD3 (native 64 px) gives 64."
    from lpd.infer import render_size
    from lpd.pipeline import model_facts

    sd35 = tmp_path / "sd3.5-medium"
    (sd35 / "transformer").mkdir(parents=True)
    (sd35 / "vae").mkdir()
    (sd35 / "model_index.json").write_text("{}")
    (sd35 / "transformer" / "config.json").write_text(json.dumps(
        {"_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": 2, "joint_attention_dim": 4096}))
    (sd35 / "vae" / "config.json").write_text(json.dumps(
        {"_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512]}))
    assert model_facts(sd35) == dict(multiple=16, text_dim=4096, default_size=1024)
    assert render_size(model_facts(sd35)) == 512 and render_size(model_facts(tiny_dir)) == 64
