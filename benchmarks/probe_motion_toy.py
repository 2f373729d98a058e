"""Probe (issue 15): can the default's DiT learn a direction word? Synthetic latents: one 4x4 object (fixed 16-d code) moving 2 latent px
per latent frame left or right from a random start; frame 0 given as Wan's I2V condition; text: the pipeline's encoder
on 'left'/'right' captions (frozen). Flow matching as the trainer; prints the loss and the loss rise (%) when the
word is swapped, every 50 steps.

    python benchmarks/probe_motion_toy.py STEPS [LR] ['{"num_heads": 8}']   (needs runs/old/shapes2-init/final)
"""
import json, sys, torch
from pipelines import ImageToVideoPipeline
from videogen.models import VideoDiT
from videogen.training.trainer import encode_prompts
from videogen.training.losses import sample_sigmas, flow_interpolate, flow_matching_loss
from videogen.conditioning.image import frame_mask
torch.manual_seed(0)
pipe = ImageToVideoPipeline.from_pretrained("runs/old/shapes2-init/final")  # its trained tokenizer and T5
caps = ["a red circle moving to the left on a black background", "a red circle moving to the right on a black background"]
with torch.no_grad():
    T = encode_prompts(pipe.tokenizer, pipe.text_encoder, caps, 40, "cpu")
cfg = dict(pipe.transformer.config); cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
cfg.update(json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}); print(cfg, flush=True)
dit = VideoDiT(**cfg)
code = torch.randn(16) * 2
def batch(n, g):
    d = torch.randint(0, 2, (n,), generator=g)  # 0 left, 1 right
    z = torch.zeros(n, 16, 5, 16, 16)
    x0 = torch.randint(4, 9, (n,), generator=g); y0 = torch.randint(0, 12, (n,), generator=g)
    for b in range(n):
        for f in range(5):
            x = x0[b] + (2 * f if d[b] else -2 * f) + 4
            x = int(x.clamp(0, 12))
            z[b, :, f, y0[b]:y0[b] + 4, x:x + 4] = code[:, None, None]
    return z, d
opt = torch.optim.AdamW(dit.parameters(), lr=float(sys.argv[2]) if len(sys.argv) > 2 else 5e-4)
g = torch.Generator().manual_seed(1)
mask = frame_mask(17, 4)[None, :, :, None, None]
def cond_of(z):
    c = torch.zeros_like(z); c[:, :, 0] = z[:, :, 0]
    return torch.cat([mask.expand(z.shape[0], -1, -1, 16, 16), c], 1)
def sens(n=64):
    gg = torch.Generator().manual_seed(99)
    z, d = batch(n, gg); noise = torch.randn(z.shape, generator=gg)
    out = {}
    for s in (0.9, 0.5):
        xt = (1 - s) * z + s * noise; x = torch.cat([xt, cond_of(z)], 1)
        with torch.no_grad():
            l_true = ((dit(x, torch.full((n,), s * 1000), T[d]).sample - (noise - z)) ** 2).mean().item()
            l_swap = ((dit(x, torch.full((n,), s * 1000), T[1 - d]).sample - (noise - z)) ** 2).mean().item()
        out[s] = round(100 * (l_swap / l_true - 1), 1)
    return out
steps = int(sys.argv[1])
for step in range(1, steps + 1):
    z, d = batch(16, g)
    sigma = sample_sigmas(16, g, 0.0, 1.0, 3.0)
    noise = torch.randn(z.shape, generator=g)
    xt, target = flow_interpolate(z, noise, sigma)
    pred = dit(torch.cat([xt, cond_of(z)], 1), sigma * 1000, T[d]).sample
    loss = flow_matching_loss(pred, target)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0); opt.step()
    if step % 50 == 0:
        print(step, round(loss.item(), 4), sens(), flush=True)
