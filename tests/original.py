"""The original system's side of the compatibility tests, restated from `tests/fixtures/original_decomposer/README.md`.

Nothing here imports lpd: `TextDecomposer` is the original's module (same key names, same computation; the
fixture test checks it against the outputs the original code computed), `load_like_the_original` is how the
original's inference script loads a checkpoint, and `render_like_the_original` is its composite sampling loop
(CFG per component with the negative prompt through the same decomposer, predictions averaged in every step),
written with stock diffusers parts. lpd must agree with all three.
"""
from collections import OrderedDict

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn


class SquaredReLU(nn.Module):
    def forward(self, x):
        return torch.relu(x) ** 2


class PerceiverAttentionBlock(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.ln_2 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.ln_ff = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d_model, d_model * 4)), ("sq_relu", SquaredReLU()),
                                              ("c_proj", nn.Linear(d_model * 4, d_model))]))

    def forward(self, x, latents):
        normed_latents = self.ln_1(latents)
        kv = torch.cat([normed_latents, self.ln_2(x)], dim=1)
        latents = latents + self.attn(normed_latents, kv, kv, need_weights=False)[0]
        return latents + self.mlp(self.ln_ff(latents))


class Connector(nn.Module):
    def __init__(self, num_components, num_tokens, width, heads, layers):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_components, num_tokens, width) * width**-0.5)
        self.perceiver_blocks = nn.Sequential(*[PerceiverAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x):
        batch, (k, n, width) = x.shape[0], self.latents.shape
        latents = self.latents.repeat(batch, 1, 1)
        x = x.repeat_interleave(k, dim=0)
        for block in self.perceiver_blocks:
            latents = block(x, latents)
        return latents.reshape(batch, k, n, width)


class PromptResampler(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.connector = Connector(**kw)


class TextDecomposer(nn.Module):
    "The original's decomposer, built from its flags (defaults: 4 x 128 tokens, width 4096, 32 heads, 6 layers)."

    def __init__(self, num_components=4, num_tokens=128, width=4096, heads=32, layers=6):
        super().__init__()
        self.mask_head = PromptResampler(num_components=num_components, num_tokens=num_tokens, width=width,
                                         heads=heads, layers=layers)

    def forward(self, encoder_hidden_states_t5):
        return list(self.mask_head.connector(encoder_hidden_states_t5).unbind(dim=1))


def load_like_the_original(path, **flags) -> TextDecomposer:
    "The original's inference script: build from the flags, then a strict `load_state_dict` of the file."
    decomposer = TextDecomposer(**flags)
    decomposer.load_state_dict(load_file(str(path)), strict=True)
    return decomposer.eval()


@torch.no_grad()
def render_like_the_original(pipe, decomposer, prompt, negative_prompt="", num_inference_steps=20,
                             guidance_scale=4.5, height=512, width=512, seed=42, max_sequence_length=512):
    "The original's inference loop on a stock SD3 pipeline (noise from a CPU generator): final latents, uint8 image."
    embeds, neg_embeds, pooled, neg_pooled = pipe.encode_prompt(
        prompt, prompt, prompt, negative_prompt=negative_prompt, negative_prompt_2=negative_prompt,
        negative_prompt_3=negative_prompt, do_classifier_free_guidance=True, max_sequence_length=max_sequence_length)
    # sub-prompt k = [CLIP states ; component k]; the CFG batch is [negative, prompt] for every component
    subs = [torch.cat([torch.cat([e[:, :77], part], dim=1) for e, part in
                       zip((neg_embeds, embeds), (neg_part, part))]) for neg_part, part in
            zip(decomposer(neg_embeds[:, 77:]), decomposer(embeds[:, 77:]))]
    pooled = torch.cat([neg_pooled, pooled])
    scale = pipe.vae_scale_factor
    shape = (1, pipe.transformer.config.in_channels, height // scale, width // scale)
    latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
    pipe.scheduler.set_timesteps(num_inference_steps)
    for t in pipe.scheduler.timesteps:
        preds = []
        for sub in subs:
            uncond, cond = pipe.transformer(hidden_states=torch.cat([latents] * 2), timestep=t.expand(2),
                                            encoder_hidden_states=sub, pooled_projections=pooled,
                                            return_dict=False)[0].chunk(2)
            preds.append(uncond + guidance_scale * (cond - uncond))
        latents = pipe.scheduler.step(torch.stack(preds).mean(0), t, latents, return_dict=False)[0]
    image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor,
                            return_dict=False)[0]
    return latents, ((image[0].permute(1, 2, 0).numpy() / 2 + 0.5).clip(0, 1) * 255).round().astype(np.uint8)
