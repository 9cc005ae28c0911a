"""Do a routed decomposer's components do anything? Issue 27's probe of trained weights, fp32 on the CPU.

On 8 training-like prompts (4-6 objects, training phrasings) at one noise draw: the per-component loss of the
decomposer against that of components that leave the empty prompt's prediction unchanged, and the cosine between each
component's difference from v_u and its target (objects by cell).

    python nbs/experiments/route_diagnose.py RUN_DIR      # a lpd-train output folder (model.safetensors, config.json)
"""
import random
import sys

import torch
from accelerate import Accelerator

from lpd.data import image_to_tensor
from lpd.decomposer import load_decomposer
from lpd.routing import route_loss, route_texts, teacher_differences
from lpd.shapes import Scene, make_row, render_scene, sample_scene
from lpd.text import encode_long_prompt
from lpd.train import (component_predictions, empty_condition, load_frozen, noise_latents, parse_args,
                       prompt_prediction)

def main(run_dir: str) -> None:
    torch.manual_seed(0)
    cfg = parse_args(["--output_dir", "/tmp/route_diagnose", "--resolution", "64"])
    frozen = load_frozen(cfg, Accelerator(cpu=True))
    pipe = frozen.pipe
    dec = load_decomposer(run_dir, pipe.transformer.config.joint_attention_dim)
    K, N = dec.config.num_components, dec.config.num_tokens
    empty = empty_condition(frozen, N, "sum", "cpu")
    rng = random.Random(1)
    rows = [make_row(sample_scene(rng, (4, 6)), rng, "long", "train") for _ in range(8)]
    images = [render_scene(Scene.from_json(r["scene"]), 64) for r in rows]
    pixels = torch.stack([image_to_tensor(image, 64, True, rng) for image in images])
    with torch.no_grad():
        vae = pipe.vae
        latents = (vae.encode(pixels).latent_dist.sample() - vae.config.shift_factor) * vae.config.scaling_factor
        generator = torch.Generator().manual_seed(0)
        _, noisy, t, sigmas = noise_latents(latents, frozen.noise_scheduler, generator=generator)
        enc = encode_long_prompt(pipe, [r["caption"] for r in rows], max_sequence_length=512)
        pred = component_predictions(pipe.transformer, dec(enc.t5_embeds, enc.t5_mask), enc, noisy, t, torch.float32,
                                     "empty", empty)
        v_u = prompt_prediction(pipe.transformer, empty, noisy, t, torch.float32)
        texts = route_texts("objects", [r["caption"] for r in rows], [r["scene"] for r in rows], K)
        targets = teacher_differences(pipe, texts, noisy, t, v_u, empty)
        diff = (pred - v_u).transpose(0, 1).float()
        has = torch.tensor([[len(x) > 0 for x in ts] for ts in texts])
        cos = torch.nn.functional.cosine_similarity(diff.flatten(2), targets.flatten(2), dim=2)
    print(f"{run_dir}: route loss {route_loss(pred - v_u, targets, sigmas):.4f}, with components that do nothing "
          f"{route_loss(0 * pred, targets, sigmas):.4f}; cosine(difference, target) {cos[has].mean():.3f}")

if __name__ == "__main__":
    main(sys.argv[1])
