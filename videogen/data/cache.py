"""Precomputed training inputs: VAE latents and text embeddings per clip, keyed by a content hash.

``build_cache`` runs a ``VideoFolderDataset`` through the VAE (``normalize_latents(encode(video).latent_dist
.mode())``) and the text encoder (``encode_prompts``) and writes one ``<key>.safetensors`` per sample:

- tensors ``latents`` ``[C, F', h, w]`` and ``prompt_embeds`` ``[n, D]`` (the ``n`` real-token rows only; the
  zero padding up to ``max_sequence_length`` is restored on reading);
- safetensors metadata (strings): ``caption``, ``metadata`` (JSON of the sample's metadata, already sliced and
  adjusted like the sample), ``path``, ``key``, ``max_sequence_length``, ``params`` (JSON), ``format``.

The key (``content_key``) is the SHA-256 of the video's bytes (every frame file for an image folder) and of the
parameters that shape the result: the dataset's preprocessing (``cache_params``), the caption, the metadata
(file bytes or inline JSON), ``max_sequence_length`` and a model identity (``model_identity``: classes,
configs, tokenizer vocabulary and a strided sample of every weight). Editing a clip, its caption or metadata,
the preprocessing or the models gives a new key; anything else reuses the file.

Resumable: a sample whose file exists is not recomputed. Files are written to a temporary name and renamed,
so an interrupted run never leaves a half file under a key name. ``index.jsonl`` (one line per sample:
``key, file, path, caption, latents_shape``) is appended as files are written and rewritten atomically at the
end to list exactly the current dataset's cached samples in dataset order; files of samples no longer in the
dataset stay on disk but leave the index. ``CachedDataset`` reads the index. Unreadable clips are skipped as
in the dataset (one warning each) and counted.

With ``crop="random"`` the cache freezes the epoch-0 view of each clip; cache with ``crop="center"``.
``videogen cache --data DIR --model PIPELINE_DIR`` is the command-line entry (``add_cli``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from videogen.io import write_atomically

FORMAT = "videogen-cache-v1"
INDEX_NAME = "index.jsonl"
_CHUNK = 1 << 20


def _hash_file(h, path: Path) -> None:
    """Feed a file's bytes into hash ``h`` in chunks."""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def content_key(path, params: dict) -> str:
    """SHA-256 (hex) of the bytes of ``path`` (a file, or every file of a folder with its relative name) and of
    ``params`` as canonical JSON (sorted keys); put preprocessing settings and a model identity in ``params``."""
    path = Path(path)
    h = hashlib.sha256(FORMAT.encode() + b"\0")
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(b"file\0" + file.relative_to(path).as_posix().encode() + b"\0")
            _hash_file(h, file)
    elif path.is_file():
        _hash_file(h, path)
    else:
        raise FileNotFoundError(f"no such video file or folder: {path}")
    h.update(b"\0params\0" + json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()


def model_identity(vae, tokenizer, text_encoder) -> str:
    """A SHA-256 naming the models: classes, configs, the tokenizer's vocabulary, and for every weight its name,
    shape, dtype and a strided sample of at most 4096 values (cheap even for large models, exact across devices)."""
    h = hashlib.sha256()
    for model in (vae, text_encoder):
        config = getattr(model, "config", {})
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        config = {k: v for k, v in config.items() if k not in ("_name_or_path", "_diffusers_version",
                                                                 "transformers_version", "_commit_hash")}
        h.update(type(model).__name__.encode() + json.dumps(config, sort_keys=True, default=str).encode())
        for name, tensor in list(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 4096)].to("cpu", torch.float32).contiguous()
            h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode() + sample.numpy().tobytes())
    vocab = sorted(tokenizer.get_vocab().items())
    h.update(type(tokenizer).__name__.encode() + json.dumps(vocab).encode())
    return h.hexdigest()


def _metadata_token(entry) -> str | None:
    """What identifies an entry's metadata: the file's SHA-256, or the inline/extra fields as JSON."""
    parts = []
    if isinstance(entry.metadata, Path):
        parts.append(hashlib.sha256(entry.metadata.read_bytes()).hexdigest() if entry.metadata.is_file() else "missing")
    elif entry.metadata is not None:
        parts.append(json.dumps(entry.metadata, sort_keys=True, default=str))
    if entry.extra:
        parts.append(json.dumps(entry.extra, sort_keys=True, default=str))
    return "|".join(parts) or None


def read_index(cache_dir) -> list[dict]:
    """The entries of ``cache_dir/index.jsonl`` (a torn last line from an interrupted run is ignored)."""
    path = Path(cache_dir) / INDEX_NAME
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "key" in entry:
            entries.append(entry)
    return entries


@torch.no_grad()
def build_cache(dataset, out_dir, vae, tokenizer, text_encoder, batch_size: int = 1, max_sequence_length: int = 512,
                device="cpu", model_id: str | None = None, progress: bool = True, image_latents: bool = False) -> dict:
    """Encode every usable sample of ``dataset`` (a ``VideoFolderDataset``) into ``out_dir`` (see the module
    docstring); return ``dict(total, written, reused, skipped, skipped_files, out_dir)``.

    ``batch_size`` samples of the same bucket are encoded together. The VAE and text encoder are moved to
    ``device``; inputs are cast to the VAE's dtype. ``model_id`` overrides ``model_identity(...)`` in the keys.
    ``image_latents``: also store ``image_latents`` ``[C, F', h, w]``, the normalised latents of the clip's first
    frame followed by black (zero) frames, encoded causally as Wan2.1-I2V conditions (for image-to-video training).
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from videogen.conditioning.text import encode_prompts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vae, text_encoder = vae.to(device).eval(), text_encoder.to(device).eval()
    model_id = model_id or model_identity(vae, tokenizer, text_encoder)
    base = dict(dataset.cache_params(), max_sequence_length=max_sequence_length, model=model_id)
    if image_latents:
        base["image_latents"] = True
    known = {e["key"]: e for e in read_index(out)}
    done: dict[int, dict] = {}  # dataset index -> index entry
    reused, written = 0, 0
    pending: dict = {}  # bucket key -> list of (index, key, sample)
    index_file = open(out / INDEX_NAME, "a", encoding="utf-8")

    def flush(group):
        """Encode one batch of same-shape samples and write a cache file per sample."""
        nonlocal written
        video = torch.stack([s["video"] for _, _, s in group]).to(device=device, dtype=vae.dtype)
        latents = vae.normalize_latents(vae.encode(video).latent_dist.mode()).float().cpu()
        if image_latents:
            first = torch.cat([video[:, :, :1], torch.zeros_like(video[:, :, 1:])], dim=2)
            conditions = vae.normalize_latents(vae.encode(first).latent_dist.mode()).float().cpu()
        embeds = encode_prompts(tokenizer, text_encoder, [s["caption"] for _, _, s in group], max_sequence_length,
                                device=device).float().cpu()
        for j, ((i, key, sample), lat, emb) in enumerate(zip(group, latents, embeds)):
            rows = emb.abs().sum(-1).nonzero()
            n = int(rows.max()) + 1 if len(rows) else 0
            params = dict(base, caption=sample["caption"])
            meta = dict(format=FORMAT, key=key, caption=sample["caption"], path=sample["path"],
                        metadata=json.dumps(sample["metadata"]), max_sequence_length=str(max_sequence_length),
                        params=json.dumps(params, default=str))
            tensors = {"latents": lat.contiguous(), "prompt_embeds": emb[:n].contiguous()}
            if image_latents:
                tensors["image_latents"] = conditions[j].contiguous()
            write_atomically(out / f"{key}.safetensors", lambda tmp: save_file(tensors, tmp, metadata=meta))
            entry = dict(key=key, file=f"{key}.safetensors", path=sample["path"], caption=sample["caption"],
                         latents_shape=list(lat.shape))
            index_file.write(json.dumps(entry) + "\n")
            index_file.flush()
            done[i] = entry
            written += 1

    try:
        for i in tqdm(range(len(dataset)), desc="caching latents", disable=not progress):
            if not dataset.is_usable(i):
                continue
            entry = dataset.entries[i]
            try:
                key = content_key(entry.video, dict(base, caption=entry.caption, metadata=_metadata_token(entry)))
            except OSError as err:
                dataset.mark_unusable(i, err)
                continue
            if (out / f"{key}.safetensors").is_file():
                done[i] = known.get(key) or _entry_from_file(out, key)
                reused += 1
                continue
            try:
                sample = dataset.load_sample(i, epoch=0)
            except Exception as err:  # noqa: BLE001 - a bad clip is reported and skipped, never fatal
                dataset.mark_unusable(i, err)
                continue
            group = pending.setdefault(tuple(sample["video"].shape), [])
            group.append((i, key, sample))
            if len(group) == batch_size:
                flush(pending.pop(tuple(sample["video"].shape)))
        for group in list(pending.values()):
            flush(group)
    finally:
        index_file.close()
    lines = "".join(json.dumps(done[i]) + "\n" for i in sorted(done))
    write_atomically(out / INDEX_NAME, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
    summary = dataset.summary()
    return dict(total=len(dataset), written=written, reused=reused, skipped=summary["skipped"],
                skipped_files=summary["skipped_files"], out_dir=str(out))


def _entry_from_file(out: Path, key: str) -> dict:
    """Rebuild an index entry from a cache file's header (for a file written just before an interruption)."""
    from safetensors import safe_open

    with safe_open(out / f"{key}.safetensors", framework="pt") as f:
        meta = f.metadata()
        shape = list(f.get_slice("latents").get_shape())
    return dict(key=key, file=f"{key}.safetensors", path=meta.get("path"), caption=meta.get("caption", ""),
                latents_shape=shape)


class CachedDataset(Dataset):
    """Samples of a cache directory: ``{"latents" [C, F', h, w], "prompt_embeds" [L, D] (zero-padded to the
    cached ``max_sequence_length``), "caption", "metadata" (dict or None), "path", "key", "index"}``, plus
    ``"image_latents"`` when the cache was built with them."""

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        if not (self.cache_dir / INDEX_NAME).is_file():
            raise FileNotFoundError(f"no cache at {self.cache_dir} (no {INDEX_NAME}); build one with `videogen cache`")
        self.entries = [e for e in read_index(self.cache_dir) if (self.cache_dir / e["file"]).is_file()]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        from safetensors import safe_open

        entry = self.entries[index]
        with safe_open(self.cache_dir / entry["file"], framework="pt") as f:
            meta = f.metadata()
            latents, embeds = f.get_tensor("latents"), f.get_tensor("prompt_embeds")
            image = f.get_tensor("image_latents") if "image_latents" in f.keys() else None
        padded = embeds.new_zeros(int(meta["max_sequence_length"]), embeds.shape[-1])
        padded[: embeds.shape[0]] = embeds
        sample = {"latents": latents, "prompt_embeds": padded, "caption": meta.get("caption", ""),
                  "metadata": json.loads(meta.get("metadata", "null")), "path": meta.get("path"), "key": entry["key"],
                  "index": index}
        if image is not None:
            sample["image_latents"] = image
        return sample

    def bucket_key(self, index: int):
        """The latent shape of sample ``index`` (for ``BucketBatchSampler``)."""
        return tuple(self.entries[index]["latents_shape"])

    def captions(self) -> list[str]:
        """Captions of all cached samples, in order."""
        return [e.get("caption", "") for e in self.entries]


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def load_cache_models(model_dir, device="cpu"):
    """``(vae, tokenizer, text_encoder)`` from a pipeline directory (ours or diffusers Wan2.1); nothing else loads."""
    import transformers

    from videogen.models import CausalVideoVAE

    path = Path(model_dir)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"{path} is not a pipeline directory (no model_index.json)")
    index = json.loads((path / "model_index.json").read_text())
    vae_config = path / "vae" / "config.json"
    if vae_config.is_file() and json.loads(vae_config.read_text()).get("_class_name") == "CausalVideoVAE":
        vae = CausalVideoVAE.from_pretrained(path / "vae")
    else:
        vae = CausalVideoVAE.from_wan(path / "vae")
    encoder_class = getattr(transformers, index.get("text_encoder", [None, "AutoModel"])[1])
    text_encoder = encoder_class.from_pretrained(path / "text_encoder")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path / "tokenizer")
    return vae.to(device).eval(), tokenizer, text_encoder.to(device).eval()


def add_cli(subparsers):
    """Register ``videogen cache`` on an argparse subparsers object; return its parser."""
    p = subparsers.add_parser("cache", help="precompute VAE latents and text embeddings of a video dataset")
    p.add_argument("--data", required=True, help="dataset folder (videos + captions, or a manifest)")
    p.add_argument("--model", required=True, help="pipeline directory with vae/, text_encoder/, tokenizer/")
    p.add_argument("--out", default=None, help="cache folder (default: DATA/cache)")
    p.add_argument("--manifest", default=None, help="manifest path (default: DATA/manifest.jsonl or .csv if present)")
    p.add_argument("--num-frames", dest="num_frames", type=int, default=17, help="1 + 4k frames per clip")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--fps", type=float, default=None, help="resample clips to this rate (default: their own)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=1)
    p.add_argument("--max-sequence-length", dest="max_sequence_length", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--image-latents", dest="image_latents", action="store_true",
                   help="also store first-frame conditioning latents (for image-to-video training)")
    p.set_defaults(func=run_cache)
    return p


def run_cache(args) -> int:
    """Run ``videogen cache``: build (or complete) the cache and print a one-line summary."""
    from videogen.data.video_dataset import VideoFolderDataset

    dataset = VideoFolderDataset(args.data, num_frames=args.num_frames, size=(args.height, args.width), fps=args.fps,
                                 manifest=args.manifest)
    vae, tokenizer, text_encoder = load_cache_models(args.model, args.device)
    out = Path(args.out) if args.out else Path(args.data) / "cache"
    result = build_cache(dataset, out, vae, tokenizer, text_encoder, batch_size=args.batch_size,
                         max_sequence_length=args.max_sequence_length, device=args.device,
                         image_latents=args.image_latents)
    skipped = f"; {result['skipped']} unreadable or too short skipped" if result["skipped"] else ""
    print(f"cached {result['total'] - result['skipped']} of {result['total']} clips in {out} "
          f"({result['written']} written, {result['reused']} reused{skipped})")
    return 0
