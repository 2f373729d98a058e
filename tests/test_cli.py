"""The `videogen` command: convert, info, and generate's message while no default checkpoint exists."""

import subprocess
import sys

import torch
from diffusers import WanTransformer3DModel

from _oracle import perturb_parameters
from test_convert_transformer import to_original
from test_transformer import TINY, inputs
from videogen.cli import main
from videogen.models.transformer import VideoDiT


def test_convert_original_checkpoint_to_our_format(tmp_path, capsys):
    torch.manual_seed(0)
    ref = perturb_parameters(WanTransformer3DModel(**TINY)).eval()
    src = tmp_path / "wan_original.pth"
    torch.save({f"model.diffusion_model.{k}": v for k, v in to_original(ref.state_dict()).items()}, src)
    assert main(["convert", str(src), str(tmp_path / "ours")]) == 0
    assert "transformer:" in capsys.readouterr().out
    model = VideoDiT.from_pretrained(tmp_path / "ours")
    assert model.config.dim == 24
    x, t, ctx, _ = inputs(TINY)
    with torch.no_grad():
        got = model(x, t, ctx).sample
        # heads are not in an original checkpoint without config: width/128 -> 1 head, so compare with that model
        expected = VideoDiT.from_wan(src)(x, t, ctx).sample
    assert torch.equal(got, expected)
    assert main(["info", str(tmp_path / "ours")]) == 0
    out = capsys.readouterr().out
    assert "VideoDiT" in out and f"{sum(p.numel() for p in model.parameters()):,} parameters" in out


def test_convert_to_diffusers_layout(tmp_path):
    torch.manual_seed(0)
    ref = perturb_parameters(WanTransformer3DModel(**TINY)).eval()
    ref.save_pretrained(tmp_path / "src")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "dst"), "--to", "diffusers"]) == 0
    back = WanTransformer3DModel.from_pretrained(tmp_path / "dst")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), ref.state_dict().values()))


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "source does not exist" in capsys.readouterr().err
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    assert main(["info", str(tmp_path / "junk.safetensors")]) == 2
    assert "junk.safetensors" in capsys.readouterr().err


def test_console_script_generate_explains_missing_default(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "videogen.cli", "generate", "a red circle", "--model", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no pipeline checkpoint" in proc.stderr
