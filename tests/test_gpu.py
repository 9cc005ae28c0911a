"""bf16 on the GPU: the composition invariant, batches with and without CFG, lpd-infer, and the real-size
SD3.5-Medium architecture (random weights). Skipped without CUDA; run on a GPU machine with
`python -m pytest -q -s tests/test_gpu.py`."""
import pytest
import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel, StableDiffusion3Pipeline

from lpd.decomposer import PromptDecomposer
from lpd.pipeline import PromptDecomposePipeline
from lpd.text import PromptEncoding
from lpd.tiny import tiny_components, tiny_decomposer

from helpers import identical_decomposer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
PROMPTS = ["a red circle above a blue square", "three green triangles on a grey background"]
KW = dict(num_inference_steps=3, height=64, width=64, max_sequence_length=64)


def cuda_pipes(dtype=torch.bfloat16):
    components = tiny_components()
    ours = PromptDecomposePipeline(**components, decomposer=identical_decomposer()).to("cuda", dtype)
    stock = StableDiffusion3Pipeline(**components).to("cuda", dtype)
    for p in (ours, stock):
        p.set_progress_bar_config(disable=True)
    return ours, stock


@pytest.mark.parametrize("guidance_scale", [1.0, 4.5])
def test_bf16_identical_components_reproduce_plain_sd3(guidance_scale):
    ours, stock = cuda_pipes()
    cfg = guidance_scale > 1
    enc, neg = ours.encode(PROMPTS, "", cfg, 1, KW["max_sequence_length"])
    parts = ours.sub_prompt_embeds(enc)
    assert parts.dtype == torch.bfloat16 and parts.device.type == "cuda"
    extra = {}
    if cfg:
        extra = dict(negative_prompt_embeds=ours.sub_prompt_embeds(neg)[0],
                     negative_pooled_prompt_embeds=neg.pooled_embeds)
    gen = lambda: torch.Generator("cpu").manual_seed(0)  # noqa: E731
    ref = stock(prompt_embeds=parts[0], pooled_prompt_embeds=enc.pooled_embeds, guidance_scale=guidance_scale,
                generator=gen(), output_type="latent", num_inference_steps=3, height=64, width=64, **extra).images
    got = ours(PROMPTS, guidance_scale=guidance_scale, generator=gen(), output_type="latent", **KW).images
    assert got.dtype == torch.bfloat16 and got.shape == (2, 4, 16, 16)
    # bf16: a batch of 8 rows and a batch of 2 may take different kernels; the mean of 4 equal bf16 values is exact
    torch.testing.assert_close(got.float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_bf16_batches_images_and_decompose():
    ours, _ = cuda_pipes()
    ours.decomposer = tiny_decomposer().to("cuda", torch.bfloat16)
    out = ours(PROMPTS, num_images_per_prompt=2, guidance_scale=4.5, output_type="np",
               generator=torch.Generator("cpu").manual_seed(0), **KW).images
    assert out.shape == (4, 64, 64, 3) and (out >= 0).all() and (out <= 1).all()
    dec = ours.decompose(PROMPTS[0], guidance_scale=4.5, output_type="pt",
                         generator=torch.Generator("cpu").manual_seed(0), **KW)
    assert len(dec.components) == 4 and dec.composite.shape == (1, 3, 64, 64)


def test_lpd_infer_on_cuda(tiny_dir, tmp_path, monkeypatch):
    "lpd-infer on CUDA in bf16: the decomposer is cast to bf16 with the rest of the pipeline."
    import lpd.infer as infer
    import lpd.pipeline as pipeline

    seen, real = [], pipeline.load_decomposer
    monkeypatch.setattr(pipeline, "load_decomposer", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    args = ["--pretrained_model_name_or_path", str(tiny_dir), "--prompt", "a red lighthouse", "--output_dir",
            str(tmp_path), "--save_decompose", "--num_inference_steps", "2", "--dtype", "bf16", "--device", "cuda"]
    assert infer.main(args) == 0
    assert (tmp_path / "component_3.png").exists()
    assert seen[0].dtype == torch.bfloat16 and seen[0].device.type == "cuda"


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 6e-2)])
def test_the_originals_checkpoint_on_cuda(dtype, atol):
    "The original's fixture checkpoint on the GPU: its outputs to 1e-5 in fp32, to bf16 precision in bf16."
    from safetensors.torch import load_file

    from lpd.core import fixture_path
    from lpd.decomposer import load_decomposer

    io = load_file(fixture_path("original_decomposer", "io.safetensors"), device="cuda")
    dec = load_decomposer(fixture_path("original_decomposer", "model.safetensors"), 64, torch_dtype=dtype,
                          num_components=3, num_tokens=5, decomposer_heads=4, decomposer_layers=2).to("cuda")
    with torch.no_grad():
        parts = dec(io["t5_embeds"])
    for k, part in enumerate(parts):
        assert part.dtype == dtype
        torch.testing.assert_close(part.float(), io[f"component_{k}"], atol=atol, rtol=0)


def test_real_size_sd35_medium_architecture_one_composite():
    "SD3.5-Medium transformer + VAE + reference-size decomposer (random weights, bf16): shapes, memory, finiteness."
    torch.manual_seed(0)
    with torch.device("cuda"):
        transformer = SD3Transformer2DModel(
            sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
            num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
            pooled_projection_dim=2048, pos_embed_max_size=384, dual_attention_layers=tuple(range(13)),
            qk_norm="rms_norm").to(torch.bfloat16)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                            layers_per_block=2, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                            shift_factor=0.0609, scaling_factor=1.5305).to(torch.bfloat16)
        decomposer = PromptDecomposer().to(torch.bfloat16)  # 4 x 128 tokens, width 4096, 32 heads, 6 blocks
    num_params = sum(p.numel() for p in decomposer.parameters())
    assert num_params == 1_210_277_888  # the original's count at its defaults
    weights = sum(p.numel() * p.element_size() for p in decomposer.parameters()) / 2**30
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():  # the decomposer alone: batch 2 of 512 T5 tokens -> 4 x (2, 128, 4096)
        parts = decomposer(torch.randn(2, 512, 4096, device="cuda", dtype=torch.bfloat16))
    assert [p.shape for p in parts] == [(2, 128, 4096)] * 4 and all(p.dtype == torch.bfloat16 for p in parts)
    decomposer_peak = torch.cuda.max_memory_allocated() / 2**30
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = PromptDecomposePipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                   vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                   text_encoder_3=None, tokenizer_3=None, decomposer=decomposer)
    pipe.set_progress_bar_config(disable=True)

    def encoding(batch):  # real shapes of SD3.5's encoders: CLIP 77 x (768 + 1280 padded to 4096), T5 512 x 4096
        clip = torch.randn(batch, 77, 4096, device="cuda", dtype=torch.bfloat16)
        clip[..., 2048:] = 0
        return PromptEncoding(clip, torch.randn(batch, 512, 4096, device="cuda", dtype=torch.bfloat16) * 0.2,
                              torch.ones(batch, 512, dtype=torch.long, device="cuda"),
                              torch.randn(batch, 2048, device="cuda", dtype=torch.bfloat16))

    torch.cuda.reset_peak_memory_stats()
    out = pipe(prompt_encoding=encoding(2), negative_prompt_encoding=encoding(2), height=512, width=512,
               num_inference_steps=2, guidance_scale=4.5, output_type="pt",
               generator=torch.Generator("cpu").manual_seed(0)).images
    assert out.shape == (2, 3, 512, 512) and torch.isfinite(out).all()
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"real-size decomposer: {num_params:,} parameters, {weights:.2f} GiB in bf16, forward of 2 x 512 "
          f"tokens peak {decomposer_peak:.2f} GiB (with the transformer and VAE resident); "
          f"composite, batch 2 x 4 components x CFG at 512^2: peak {peak:.1f} GiB")
    assert peak < 40


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpu_training_script(tmp_path):
    "tests/gpu/train_2gpu.sh, short: 1 GPU and 2 GPUs at the same global batch, disjoint shards on the 2 ranks."
    import json
    import subprocess

    from lpd.core import repo_root

    proc = subprocess.run(["bash", "tests/gpu/train_2gpu.sh", str(tmp_path), "20"], cwd=repo_root(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_processes_2gpu"] == 2 and summary["steps_where_ranks_shared_a_caption"] == 0


def sd35_block_shapes():
    "SD3.5-Medium's block shapes in 4 layers (2 of them dual attention), bf16, and a batch of 2 at 512²."
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=64, patch_size=2, in_channels=16, out_channels=16, num_layers=4, attention_head_dim=64,
        num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
        pos_embed_max_size=96, dual_attention_layers=(0, 1), qk_norm="rms_norm").to("cuda", torch.bfloat16)
    inputs = dict(hidden_states=torch.randn(2, 16, 64, 64, device="cuda", dtype=torch.bfloat16),
                  encoder_hidden_states=torch.randn(2, 205, 4096, device="cuda", dtype=torch.bfloat16),
                  pooled_projections=torch.randn(2, 2048, device="cuda", dtype=torch.bfloat16),
                  timestep=torch.full((2,), 500.0, device="cuda"), return_dict=False)
    return transformer, inputs


def test_fp8_blocks_quantize_the_block_linears_and_stay_close_to_bf16():
    """lpd.speedups.fp8_blocks (torchao's dynamic float8, H100+): every block linear quantized, outputs near bf16's;
    inductor's settings untouched (torchao's own turn on coordinate-descent tuning: minutes of compiling a shape)."""
    pytest.importorskip("torchao")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 matmuls need an H100-class GPU")
    from lpd.speedups import fp8_blocks

    transformer, inputs = sd35_block_shapes()
    with torch.no_grad():
        reference = transformer(**inputs)[0].float()
        linears = sum(isinstance(m, torch.nn.Linear) for m in transformer.transformer_blocks.modules())
        tuning = torch._inductor.config.coordinate_descent_tuning
        assert fp8_blocks(transformer) == linears > 0
        assert torch._inductor.config.coordinate_descent_tuning == tuning
        out = transformer(**inputs)[0].float()
    error = ((out - reference).norm() / reference.norm()).item()
    print(f"fp8 blocks: {linears} linears, relative error {error:.4f} against bf16")
    assert 0 < error < 0.1


def test_cuda_graphs_replay_the_pipeline():
    """lpd.speedups.cuda_graphs on the tiny SD3 in bf16: a batch of 2 with CFG, the shared negative every 2nd step
    (two row counts, two graphs) gives the plain forward's latents; calls with gradients run the plain forward."""
    from lpd.speedups import cuda_graphs

    ours, _ = cuda_pipes()
    ours.decomposer = tiny_decomposer().to("cuda", torch.bfloat16)
    kw = dict(guidance_scale=4.5, negative_branch="shared", negative_every=2, output_type="latent", **KW)
    gen = lambda: torch.Generator("cpu").manual_seed(0)  # noqa: E731
    want = ours(PROMPTS, generator=gen(), **kw).images
    graphs = cuda_graphs(ours.transformer)
    got = ours(PROMPTS, generator=gen(), **kw).images
    again = ours(PROMPTS, generator=gen(), **kw).images  # replayed, not captured again
    assert len(graphs.graphs) == 2
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)
    torch.testing.assert_close(again, got, atol=0, rtol=0)
    x = dict(hidden_states=torch.randn(2, 4, 8, 8, device="cuda", dtype=torch.bfloat16),
             encoder_hidden_states=torch.randn(2, 21, 128, device="cuda", dtype=torch.bfloat16),
             pooled_projections=torch.randn(2, 64, device="cuda", dtype=torch.bfloat16),
             timestep=torch.full((2,), 500.0, device="cuda"), return_dict=False)
    ours.transformer(**x)[0].float().sum()  # with gradients on (as in training): the plain forward, no capture
    assert len(graphs.graphs) == 2
    graphs.remove()
    assert "forward" not in vars(ours.transformer)


def test_fused_qkv_fp8_compiled_cuda_graphs_at_sd35_block_shapes():
    """The fastest sampling path on SD3.5-Medium's block shapes (4 layers, 2 dual attention): fused q, k, v alone
    stays at bf16 rounding of the separate projections; then fp8, compiled blocks and CUDA graphs: the graph replays
    the compiled call, near bf16."""
    pytest.importorskip("torchao")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 matmuls need an H100-class GPU")
    from lpd.speedups import compile_blocks, cuda_graphs, fp8_blocks, fuse_qkv

    transformer, inputs = sd35_block_shapes()
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
    with torch.no_grad():
        reference = transformer(**inputs)[0].float()
        assert fuse_qkv(transformer) == 6  # 4 joint attentions, 2 image-only ones
        fused = transformer(**inputs)[0].float()
        assert fp8_blocks(transformer) == sum(isinstance(m, torch.nn.Linear)
                                              for m in transformer.transformer_blocks.modules())
        compile_blocks(transformer)
        compiled = transformer(**inputs)[0].float()
        graphs = cuda_graphs(transformer)
        replayed = [transformer(**inputs)[0].float() for _ in range(2)]
    print(f"fused q, k, v: relative error {rel(fused, reference):.5f} against bf16; fused + fp8 + compiled + "
          f"CUDA graphs: {rel(replayed[1], reference):.4f}")
    assert rel(fused, reference) < 5e-3
    assert len(graphs.graphs) == 1
    torch.testing.assert_close(replayed[0], compiled, atol=0, rtol=0)
    torch.testing.assert_close(replayed[1], compiled, atol=0, rtol=0)
    assert 0 < rel(replayed[1], reference) < 0.1
