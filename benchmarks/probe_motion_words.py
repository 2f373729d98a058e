"""Probe (issue 15): loss rise (%) when direction words are swapped, I2V condition given, on single-object moving clips of a cache.

    python benchmarks/probe_motion_words.py PIPELINE_DIR [CACHE_DIR]   (an I2V-layout pipeline and a `videogen cache`
    folder built with --image-latents)
"""
import sys, re, torch
from pipelines import ImageToVideoPipeline
from videogen.data.cache import CachedDataset
from videogen.training.trainer import encode_prompts
from videogen.conditioning.image import frame_mask
SWAP = {"left": "right", "right": "left", "up": "down", "down": "up"}
pipe = ImageToVideoPipeline.from_pretrained(sys.argv[1])
ds = CachedDataset((sys.argv[2] if len(sys.argv) > 2 else "data/motion-probe-cache") + "")
idx = list(range(len(ds)))[-120:]
g = torch.Generator().manual_seed(0)
res = {s: [0.0, 0.0] for s in (0.9, 0.7, 0.5)}
for i in idx:
    it = ds[i]; z = it["latents"][None].float(); cap = it["caption"]
    swapped = re.sub(r"\b(left|right|up|down)\b", lambda m: SWAP[m.group(1)], cap)
    texts = encode_prompts(pipe.tokenizer, pipe.text_encoder, [cap, swapped], 40, "cpu")
    b, c, f, h, w = z.shape
    mask = frame_mask(1 + (f - 1) * 4, 4)[None, :, :, None, None].expand(1, -1, -1, h, w)
    cond = torch.cat([mask, it["image_latents"][None].float()], 1)
    for s in res:
        noise = torch.randn(z.shape, generator=g)
        xt = (1 - s) * z + s * noise
        x = torch.cat([xt, cond], 1).repeat(2, 1, 1, 1, 1)
        with torch.no_grad():
            v = pipe.transformer(x, torch.tensor([s * 1000] * 2), texts).sample
        target = noise - z
        l = ((v - target) ** 2).mean(dim=(1, 2, 3, 4))
        res[s][0] += l[0].item(); res[s][1] += l[1].item()
print(sys.argv[1], {s: round(100 * (b_ / a - 1), 2) for s, (a, b_) in res.items()})
