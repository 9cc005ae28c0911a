"""Cross-module contracts of the pipeline on the tiny SD3: the composition invariant, batches, CFG, save/load."""
import numpy as np
import pytest
import torch
from diffusers import StableDiffusion3Pipeline

from lpd.decomposer import PromptDecomposer
from lpd.pipeline import PromptDecomposePipeline
from lpd.tiny import tiny_components, tiny_decomposer

from helpers import identical_decomposer

PROMPTS = ["a red circle above a blue square", "three green triangles on a grey background, the left one small"]
KW = dict(num_inference_steps=3, height=64, width=64, max_sequence_length=64)


def gen(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


@pytest.fixture(scope="module")
def pipes():
    components = tiny_components()
    ours = PromptDecomposePipeline(**components, decomposer=identical_decomposer())
    stock = StableDiffusion3Pipeline(**components)
    for p in (ours, stock):
        p.set_progress_bar_config(disable=True)
    return ours, stock


@pytest.mark.parametrize("guidance_scale", [1.0, 4.5])
@pytest.mark.parametrize("num_images_per_prompt", [1, 2])
def test_identical_components_reproduce_plain_sd3(pipes, guidance_scale, num_images_per_prompt):
    "K identical sub-prompts: the composite is the stock SD3 pipeline on [CLIP ; tokens], batch 2, CFG on and off."
    ours, stock = pipes
    cfg = guidance_scale > 1
    enc, neg = ours.encode(PROMPTS, "", cfg, num_images_per_prompt, KW["max_sequence_length"])
    parts = ours.sub_prompt_embeds(enc)
    assert torch.equal(parts[0], parts[3])  # the premise: every component carries the same tokens
    stock_kw = dict(prompt_embeds=parts[0], pooled_prompt_embeds=enc.pooled_embeds)
    if cfg:
        stock_kw.update(negative_prompt_embeds=ours.sub_prompt_embeds(neg)[0],
                        negative_pooled_prompt_embeds=neg.pooled_embeds)
    ref = stock(**stock_kw, guidance_scale=guidance_scale, generator=gen(), output_type="latent",
                num_inference_steps=3, height=64, width=64).images
    got = ours(PROMPTS, num_images_per_prompt=num_images_per_prompt, guidance_scale=guidance_scale,
               generator=gen(), output_type="latent", **KW).images
    assert got.shape == (2 * num_images_per_prompt, 4, 16, 16)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_images_per_prompt", [1, 2])
def test_shared_negative_branch_is_one_plain_unconditional_pass(pipes, num_images_per_prompt):
    """negative_branch="shared": with identical components, the stock SD3 pipeline given the negative as it encodes
    it (T5 padded to the sub-prompts' length), batch 2; the transformer sees K + 1 rows per image, not 2K."""
    ours, stock = pipes
    enc, _ = ours.encode(PROMPTS, "", False, num_images_per_prompt, KW["max_sequence_length"])
    neg, neg_pooled = ours.plain_embeds(["", ""], num_images_per_prompt, ours.decomposer.config.num_tokens)
    ref = stock(prompt_embeds=ours.sub_prompt_embeds(enc)[0], pooled_prompt_embeds=enc.pooled_embeds,
                negative_prompt_embeds=neg, negative_pooled_prompt_embeds=neg_pooled, guidance_scale=4.5,
                generator=gen(), output_type="latent", num_inference_steps=3, height=64, width=64).images
    rows = []
    hook = ours.transformer.register_forward_hook(lambda m, args, kwargs, out: rows.append(kwargs["hidden_states"]
                                                                                          .shape[0]), with_kwargs=True)
    try:
        got = ours(PROMPTS, num_images_per_prompt=num_images_per_prompt, guidance_scale=4.5, generator=gen(),
                   output_type="latent", negative_branch="shared", **KW).images
    finally:
        hook.remove()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    K = ours.decomposer.config.num_components
    assert rows == [(K + 1) * 2 * num_images_per_prompt] * KW["num_inference_steps"]


def test_invariant_fails_for_different_components(pipes):
    "The invariant is not vacuous: a decomposer with distinct components does not reproduce one of them."
    ours, stock = pipes
    distinct = PromptDecomposePipeline(**{k: v for k, v in ours.components.items() if k != "decomposer"},
                                       decomposer=tiny_decomposer())
    distinct.set_progress_bar_config(disable=True)
    enc, neg = distinct.encode(PROMPTS, "", True, 1, KW["max_sequence_length"])
    ref = stock(prompt_embeds=distinct.sub_prompt_embeds(enc)[0], pooled_prompt_embeds=enc.pooled_embeds,
                negative_prompt_embeds=distinct.sub_prompt_embeds(neg)[0],
                negative_pooled_prompt_embeds=neg.pooled_embeds, guidance_scale=4.5, generator=gen(),
                output_type="latent", num_inference_steps=3, height=64, width=64).images
    got = distinct(PROMPTS, guidance_scale=4.5, generator=gen(), output_type="latent", **KW).images
    assert (got - ref).abs().max() > 1e-4


def test_output_types_and_generators(pipes):
    ours, _ = pipes
    np_out = ours(PROMPTS, guidance_scale=4.5, generator=[gen(1), gen(2)], output_type="np", **KW).images
    assert np_out.shape == (2, 64, 64, 3) and np_out.dtype == np.float32
    pt_out = ours(PROMPTS, guidance_scale=4.5, generator=[gen(1), gen(2)], output_type="pt", **KW).images
    assert pt_out.shape == (2, 3, 64, 64)
    np.testing.assert_allclose(pt_out.permute(0, 2, 3, 1).numpy(), np_out, atol=1e-6)
    pil = ours(PROMPTS[0], guidance_scale=4.5, generator=gen(1), **KW).images
    assert len(pil) == 1 and pil[0].size == (64, 64)
    # per-row generators: row 0 of the batch equals a single run with the same generator
    single = ours(PROMPTS[0], guidance_scale=4.5, generator=[gen(1)], output_type="np", **KW).images
    np.testing.assert_allclose(single[0], np_out[0], atol=1e-5)


def test_fixed_seed_gives_the_stored_pixels():
    "Regression: a fixed seed gives the same pixels (diffusers' fast-test style, atol 1e-3)."
    pipe = PromptDecomposePipeline(**tiny_components(), decomposer=tiny_decomposer())
    pipe.set_progress_bar_config(disable=True)
    image = pipe(PROMPTS[0], guidance_scale=4.5, generator=gen(), output_type="np", **KW).images
    expected = np.array(EXPECTED_SLICE, dtype=np.float32)
    np.testing.assert_allclose(image[0, -3:, -3:, -1].flatten(), expected, atol=1e-3)


EXPECTED_SLICE = [0.4919, 0.4692, 0.4973, 0.4764, 0.4729, 0.4774, 0.4498, 0.4729, 0.4383]  # torch 2.13 CPU


def test_decompose_components_match_single_component_runs(pipes):
    ours, _ = pipes
    pipe = PromptDecomposePipeline(**{k: v for k, v in ours.components.items() if k != "decomposer"},
                                   decomposer=tiny_decomposer())
    pipe.set_progress_bar_config(disable=True)
    out = pipe.decompose(PROMPTS, guidance_scale=4.5, generator=gen(), output_type="latent", **KW)
    assert out.composite.shape == (2, 4, 16, 16) and len(out.components) == 4
    for k in (0, 3):
        alone = pipe(PROMPTS, components=[k], guidance_scale=4.5, generator=gen(), output_type="latent", **KW).images
        torch.testing.assert_close(out.components[k], alone, atol=1e-5, rtol=1e-5)
    # the composite is the mean of the components' predictions, not of their images: it differs from each
    assert all((out.composite - c).abs().max() > 1e-5 for c in out.components)


def test_pipeline_roundtrip_and_stock_folder(tiny_dir, tmp_path):
    "A stock SD3 folder + a decomposer loads; save_pretrained/from_pretrained round-trip the whole pipeline."
    dec = PromptDecomposer.from_pretrained(tiny_dir / "decomposer")
    pipe = PromptDecomposePipeline.from_pretrained(tiny_dir, decomposer=dec)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "saved")
    back = PromptDecomposePipeline.from_pretrained(tmp_path / "saved")
    assert isinstance(back.decomposer, PromptDecomposer)
    back.set_progress_bar_config(disable=True)
    a = pipe(PROMPTS[0], generator=gen(), output_type="latent", **KW).images
    b = back(PROMPTS[0], generator=gen(), output_type="latent", **KW).images
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (tmp_path / "saved" / "decomposer" / "model.safetensors").is_file()


def test_missing_decomposer_is_a_clear_error(tiny_dir):
    pipe = PromptDecomposePipeline(**tiny_components())
    with pytest.raises(ValueError, match="no decomposer"):
        pipe("x", **KW)


def test_precomputed_encodings_need_no_text_encoders(pipes, tmp_path):
    "Encoding is separable: cached encodings render on a pipeline loaded without CLIP/T5, identically."
    ours, _ = pipes
    enc, neg = ours.encode(PROMPTS, "", True, 1, KW["max_sequence_length"])
    enc.save(tmp_path / "enc.safetensors")
    neg.save(tmp_path / "neg.safetensors")
    no_text = dict.fromkeys(["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3",
                             "tokenizer_3"])
    bare = PromptDecomposePipeline(**{**ours.components, **no_text})
    bare.set_progress_bar_config(disable=True)
    from lpd.text import PromptEncoding

    got = bare(prompt_encoding=PromptEncoding.load(tmp_path / "enc.safetensors"),
               negative_prompt_encoding=PromptEncoding.load(tmp_path / "neg.safetensors"), guidance_scale=4.5,
               generator=gen(), output_type="latent", **KW).images
    ref = ours(PROMPTS, guidance_scale=4.5, generator=gen(), output_type="latent", **KW).images
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)  # saved tensors are contiguous: other kernels
    with pytest.raises(ValueError, match="needs a negative_prompt_encoding"):
        bare(prompt_encoding=enc, guidance_scale=4.5, **KW)


@pytest.mark.parametrize("guidance_scale", [1.0, 4.5])
def test_one_euler_step_composite_is_the_mean_of_its_components(guidance_scale):
    "An Euler step is linear in the velocity: after one step the composite is exactly the mean of the components."
    pipe = PromptDecomposePipeline(**tiny_components(), decomposer=tiny_decomposer())
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=1, height=64, width=64, max_sequence_length=64, guidance_scale=guidance_scale,
              output_type="latent")
    out = pipe.decompose(PROMPTS, generator=[gen(0), gen(1)], **kw)
    mean = torch.stack(out.components).mean(0)
    torch.testing.assert_close(out.composite, mean, atol=1e-5, rtol=0)
    assert not torch.allclose(out.components[0], out.components[-1], atol=1e-5)  # the components differ


def test_the_decomposer_reads_max_sequence_length_tokens_and_the_t5_mask():
    "The pipeline encodes `max_sequence_length` T5 tokens and hands the decomposer their mask."
    pipe = PromptDecomposePipeline(**tiny_components(), decomposer=tiny_decomposer(use_attention_mask=True))
    pipe.set_progress_bar_config(disable=True)
    seen = []
    pipe.decomposer.register_forward_hook(lambda module, args, kwargs, out: seen.append((args, kwargs)),
                                          with_kwargs=True)
    pipe(PROMPTS, max_sequence_length=24, num_inference_steps=1, height=64, width=64, guidance_scale=4.5,
         generator=gen(), output_type="latent")
    (t5, mask), _ = seen[-1]  # the prompt branch (the negative "" came first)
    assert t5.shape[:2] == (2, 24) and mask.shape == (2, 24)
    lengths = [len(pipe.tokenizer_3(p).input_ids) for p in PROMPTS]
    assert mask.sum(1).tolist() == [min(n, 24) for n in lengths] and 0 < min(lengths) < 24


def router_copy(components, target: int, num_components: int = 3, length: int = 64) -> PromptDecomposePipeline:
    "A pipeline whose token router sends every T5 position (padding too) to component `target`, T5 only, sum rule."
    width = components["transformer"].config.joint_attention_dim
    dec = PromptDecomposer(num_components=num_components, num_tokens=length, width=width, use_attention_mask=False,
                           kind="router", component_clip="empty", composition="sum")
    pipe = PromptDecomposePipeline(**components, decomposer=dec)
    pipe.set_progress_bar_config(disable=True)
    dec.set_blank(pipe.encode([""], None, False, max_sequence_length=length)[0].t5_embeds[0])
    with torch.no_grad():
        dec.mask_head.router.scores.weight.zero_()
        dec.mask_head.router.scores.bias.copy_(50.0 * torch.nn.functional.one_hot(torch.tensor(target),
                                                                                num_components + 1))
    return pipe


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_a_router_that_sends_every_token_to_one_component_renders_the_whole_prompt(guidance_scale):
    "Blank components add nothing under the sum rule: the composite is the prompt given as one T5-only sub-prompt."
    components = tiny_components()
    pipe = router_copy(components, target=1)
    kw = dict(KW, guidance_scale=guidance_scale, output_type="latent")
    got = pipe(PROMPTS, generator=gen(), **kw).images
    want = pipe(sub_prompts=[[p] for p in PROMPTS], component_clip="empty", composition="sum", sub_prompt_length=64,
                generator=gen(), **kw).images
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    nowhere = router_copy(components, target=3)(PROMPTS, generator=gen(), **kw).images  # every token to "none"
    empty = pipe(sub_prompts=[[""] for _ in PROMPTS], component_clip="empty", composition="sum",
                 sub_prompt_length=64, generator=gen(), **kw).images
    torch.testing.assert_close(nowhere, empty, rtol=1e-4, atol=1e-4)
    assert (got - nowhere).abs().max() > 1e-3  # the premise: the prompt changes the latents (tiny model: ~2e-3)


def test_a_routers_similarity_is_what_its_components_add_to_the_empty_prompt():
    "All tokens in one component: the others add nothing, so no two components are alike (not 1.0 from the blank)."
    from lpd.analysis import analyse_decomposition
    sim = np.array(analyse_decomposition(router_copy(tiny_components(), target=1), PROMPTS[0], 64)["similarity"])
    assert sim[1, 1] == pytest.approx(1.0) and np.abs(sim[~np.eye(3, dtype=bool)]).max() < 1e-6


@pytest.mark.parametrize("composition", ["mean", "sum"])
def test_component_weights_weigh_the_components(pipes, composition):
    """All weight on component 2 renders component 2 alone (under `sum` at K times the guidance: weights share out the
    K components' total); equal weights render what no weights do."""
    ours, _ = pipes
    pipe = PromptDecomposePipeline(**{k: v for k, v in ours.components.items() if k != "decomposer"},
                                   decomposer=tiny_decomposer())
    pipe.set_progress_bar_config(disable=True)

    def render(guidance_scale=2.0, **kw):
        return pipe(PROMPTS, guidance_scale=guidance_scale, composition=composition, generator=gen(),
                    output_type="latent", **KW, **kw).images

    alone = render(components=[2], guidance_scale=2.0 * (4 if composition == "sum" else 1))
    torch.testing.assert_close(render(component_weights=[0, 0, 1, 0]), alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(render(component_weights=[3, 3, 3, 3]), render(), atol=1e-5, rtol=1e-5)


def test_sigmas_reach_the_scheduler_as_in_stock_sd3(pipes):
    "Custom sigmas: K identical components with them render what the stock pipeline renders with them."
    ours, stock = pipes
    sigmas = [1.0, 0.6, 0.25]
    enc, neg = ours.encode(PROMPTS, "", True, 1, KW["max_sequence_length"])
    ref = stock(prompt_embeds=ours.sub_prompt_embeds(enc)[0], pooled_prompt_embeds=enc.pooled_embeds,
                negative_prompt_embeds=ours.sub_prompt_embeds(neg)[0], negative_pooled_prompt_embeds=neg.pooled_embeds,
                guidance_scale=4.5, generator=gen(), output_type="latent", sigmas=sigmas, num_inference_steps=3,
                height=64, width=64).images
    got = ours(PROMPTS, guidance_scale=4.5, generator=gen(), output_type="latent", sigmas=sigmas, **KW).images
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    default = ours(PROMPTS, guidance_scale=4.5, generator=gen(), output_type="latent", **KW).images
    assert (got - default).abs().max() > 1e-3
