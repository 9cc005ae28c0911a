"""The tiny SD3 is reproducible, loads with the stock pipeline offline, and `python -m lpd.tiny` writes it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffusers import StableDiffusion3Pipeline

from lpd.core import asset_path
from lpd.decomposer import PromptDecomposer
from lpd.tiny import train_t5_spiece


@pytest.mark.slow  # trains the sentencepiece model: ~5 s
def test_t5_tokenizer_fixture_is_reproducible(tmp_path):
    "The committed spiece.model is exactly what train_t5_spiece builds (no hidden, unreproducible artifact)."
    built = train_t5_spiece(tmp_path / "spiece.model")
    assert built.read_bytes() == asset_path("tokenizers", "t5", "spiece.model").read_bytes()


@pytest.mark.slow
def test_cli_writes_a_stock_sd3_folder_with_a_decomposer(tmp_path):
    out = tmp_path / "tiny"
    proc = subprocess.run([sys.executable, "-m", "lpd.tiny", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((out / "model_index.json").read_text())
    assert index["decomposer"] == ["lpd.decomposer", "PromptDecomposer"]
    pipe = StableDiffusion3Pipeline.from_pretrained(out)  # HF_HUB_OFFLINE=1 (conftest): nothing is fetched
    assert pipe.transformer.config.joint_attention_dim == pipe.text_encoder_3.config.d_model == 128
    clip_width = pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size
    assert clip_width < pipe.text_encoder_3.config.d_model  # zero-padded like SD3, never cropped
    dec = PromptDecomposer.from_pretrained(out / "decomposer")
    assert dec.config.width == 128
    again = subprocess.run([sys.executable, "-m", "lpd.tiny", str(out)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "is not empty" in again.stderr and "Traceback" not in again.stderr


def test_same_seed_same_weights(tmp_path):
    from lpd.tiny import save_tiny

    a, b = save_tiny(tmp_path / "a", seed=1), save_tiny(tmp_path / "b", seed=1)
    for part in ("transformer/diffusion_pytorch_model.safetensors", "decomposer/model.safetensors"):
        assert (a / part).read_bytes() == (b / part).read_bytes()


@pytest.mark.slow  # a fresh interpreter that imports lpd: ~3 s
def test_the_clip_vocabulary_folder_lives_as_long_as_its_process():
    "`lpd.tiny`'s CLIP vocabulary is written once per process, into a temporary folder removed when the process ends."
    code = ("from pathlib import Path; from lpd.tiny import _clip_vocab_dir as d; "
            "assert d() == d() and Path(d(), 'vocab.json').is_file(); print(d())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    folder = Path(run.stdout.strip())
    assert folder.name.startswith("lpd-clip-vocab-") and not folder.exists()
