"""Checkpoint integrity: checksums written and verified, corrupted files named in the error."""

import pytest
import torch
from safetensors.torch import save_file

from videogen.integrity import CHECKSUMS, CheckpointIntegrityError, verify_checkpoint, write_checksums


def _checkpoint(root):
    (root / "transformer").mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, root / "transformer" / "model.safetensors")
    (root / "model_index.json").write_text("{}")
    return root


def test_checksums_round_trip_and_corruption_is_named(tmp_path):
    root = _checkpoint(tmp_path / "ckpt")
    write_checksums(root)
    lines = (root / CHECKSUMS).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["model_index.json", "transformer/model.safetensors"]
    assert verify_checkpoint(root) == 2
    weights = root / "transformer" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in a tensor: the header still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointIntegrityError, match="transformer/model.safetensors is corrupted"):
        verify_checkpoint(root)
    weights.unlink()
    with pytest.raises(CheckpointIntegrityError, match="model.safetensors is missing"):
        verify_checkpoint(root)


def test_without_checksums_a_broken_header_is_named(tmp_path):
    root = _checkpoint(tmp_path / "ckpt")
    assert verify_checkpoint(root) == 1
    weights = root / "transformer" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # truncated
    with pytest.raises(CheckpointIntegrityError, match="model.safetensors is not a readable safetensors file"):
        verify_checkpoint(root)
