"""Checksums for shipped checkpoints: write a SHA256SUMS file, and verify a directory before loading it."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHECKSUMS = "SHA256SUMS"
_CHUNK = 1 << 20


class CheckpointIntegrityError(ValueError):
    """A checkpoint file is missing, altered or unreadable; the message names the file."""


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(directory) -> Path:
    """Write ``SHA256SUMS`` (``<hex>  <relative path>`` per line, sorted, as ``sha256sum`` prints) for every file
    under ``directory``; return its path. ``sha256sum -c SHA256SUMS`` checks it too."""
    root = Path(directory)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    lines = "".join(f"{sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in files)
    (root / CHECKSUMS).write_text(lines)
    return root / CHECKSUMS


def verify_checkpoint(directory) -> int:
    """Check a checkpoint directory before it is loaded; return the number of files checked.

    With a ``SHA256SUMS`` file every listed file must exist and match. Without one (a checkpoint not written by
    ``write_checksums``), every ``*.safetensors`` file's header must at least parse. Either failure raises
    ``CheckpointIntegrityError`` naming the file.
    """
    root = Path(directory)
    sums = root / CHECKSUMS
    if sums.is_file():
        count = 0
        for number, line in enumerate(sums.read_text().splitlines(), 1):
            if not line.strip():
                continue
            digest, _, name = line.partition("  ")
            path = root / name
            if not path.is_file():
                raise CheckpointIntegrityError(f"checkpoint file {path} is missing (listed in {sums}, line {number})")
            if sha256(path) != digest:
                raise CheckpointIntegrityError(
                    f"checkpoint file {path} is corrupted: its SHA-256 does not match {sums} (re-copy or re-download "
                    "the checkpoint)"
                )
            count += 1
        return count
    from safetensors import safe_open

    files = sorted(root.rglob("*.safetensors"))
    for path in files:
        try:
            with safe_open(path, framework="pt") as f:
                f.keys()
        except Exception as err:  # noqa: BLE001 - any parse failure is reported with the file's name
            raise CheckpointIntegrityError(f"checkpoint file {path} is not a readable safetensors file: {err}") from err
    return len(files)
