"""The toy SD3, stage 1: the committed VAE (data/toy-sd3/vae, trained by `python -m lpd.toy vae
data/profiles/toy_vae.yaml` on an H100) reconstructs held-out shapes-world scenes so that the judge reads them."""
import json

from diffusers import AutoencoderKL
from transformers import HfArgumentParser

from lpd.core import repo_root
from lpd.toy import ToyVAEConfig, roundtrip_scores

VAE = repo_root() / "data" / "toy-sd3" / "vae"


def test_the_toy_vae_round_trip_is_read_by_the_judge():
    cfg = HfArgumentParser(ToyVAEConfig).parse_yaml_file(str(repo_root() / "data" / "profiles" / "toy_vae.yaml"))[0]
    cfg.eval_scenes, cfg.device = 60, "cpu"
    vae = AutoencoderKL.from_pretrained(VAE)
    recorded = json.loads((VAE / "metrics.json").read_text())
    assert vae.config.scaling_factor == recorded["scaling_factor"]
    scores = roundtrip_scores(vae, cfg)
    assert scores["renders"]["presence"] == 1.0
    assert all(scores["roundtrip"][m] >= 0.98 for m in ("presence", "attributes", "location", "scene")), scores
    assert scores["mse"] < 2 * recorded["mse"]
