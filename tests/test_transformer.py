"""VideoDiT against the diffusers WanTransformer3DModel oracle, plus the skip/adapter arguments and input checks."""

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.hooks import LayerSkipConfig, apply_layer_skip

from _oracle import max_abs_diff, perturb_parameters, randn
from videogen.models.transformer import VideoDiT, block_mask

TINY = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
    text_dim=16, freq_dim=32, ffn_dim=32, num_layers=3, rope_max_seq_len=32,
)
TINY_I2V = {**TINY, "in_channels": 12, "image_dim": 8, "added_kv_proj_dim": 24}
TINY_P1 = {**TINY, "patch_size": (1, 1, 1)}  # the embedded default's DiT patchifies 1x1x1


def build_pair(cfg, tmp_path):
    """A perturbed diffusers reference and our model loaded from its saved directory."""
    torch.manual_seed(0)
    ref = perturb_parameters(WanTransformer3DModel(**cfg)).eval()
    ref.save_pretrained(tmp_path / "ref")
    return ref, VideoDiT.from_wan(tmp_path / "ref")


def inputs(cfg, batch=2, frames=3, height=4, width=6, text_tokens=512, real_tokens=(5, 9)):
    """Non-square latents, F >= 3, two timesteps, text zero-padded to 512 tokens as Wan does."""
    x = randn(batch, cfg["in_channels"], frames, height, width, seed=42)
    t = torch.tensor([999.0, 137.5, 500.0, 3.0][:batch])
    ctx = randn(batch, text_tokens, cfg["text_dim"], seed=43)
    for b in range(batch):
        ctx[b, real_tokens[b % len(real_tokens)]:] = 0
    img = randn(batch, 257, cfg["image_dim"], seed=44) if cfg.get("image_dim") else None
    return x, t, ctx, img


def assert_close_rel(ours, ref, rel=1e-5):
    err, scale = max_abs_diff(ours, ref), ref.abs().max().item()
    assert err <= rel * scale, f"max|diff| {err:.3g} > {rel} * max|ref| {scale:.3g}"


@pytest.mark.parametrize("cfg", [TINY, TINY_I2V, TINY_P1], ids=["t2v", "i2v", "patch1"])
def test_matches_diffusers(cfg, tmp_path):
    ref, ours = build_pair(cfg, tmp_path)
    x, t, ctx, img = inputs(cfg)
    with torch.no_grad():
        expected = ref(x, t, ctx, encoder_hidden_states_image=img).sample
        got = ours(x, t, ctx, img).sample
    assert got.shape == x[:, :4].shape
    assert_close_rel(got, expected)


def test_per_token_timesteps_match_diffusers(tmp_path):
    ref, ours = build_pair(TINY, tmp_path)
    x, _, ctx, _ = inputs(TINY)
    n = 3 * 2 * 3
    t = torch.linspace(0, 999, 2 * n).reshape(2, n)
    with torch.no_grad():
        assert_close_rel(ours(x, t, ctx).sample, ref(x, t, ctx).sample)
    # A per-token timestep that is constant equals the per-sample path.
    t_const = torch.tensor([700.0, 20.0])
    with torch.no_grad():
        a = ours(x, t_const, ctx).sample
        b = ours(x, t_const[:, None].expand(2, n), ctx).sample
    assert max_abs_diff(a, b) < 1e-5


def test_stg_block_skip_matches_diffusers_layer_skip(tmp_path):
    """STG-R for sample 1 at block 1 == diffusers' whole-block skip hook applied to that sample alone."""
    ref, ours = build_pair(TINY, tmp_path)
    x, t, ctx, _ = inputs(TINY)
    with torch.no_grad():
        plain = ref(x, t, ctx).sample
        apply_layer_skip(ref, LayerSkipConfig(indices=[1], fqn="blocks", skip_attention=True, skip_ff=True))
        skipped_ref = ref(x, t, ctx).sample
        mask = block_mask(2, 3, samples=[1], blocks=[1])
        got = ours(x, t, ctx, skip_blocks=mask).sample
    assert_close_rel(got[0], plain[0])  # sample 0 untouched
    assert_close_rel(got[1], skipped_ref[1])
    assert max_abs_diff(skipped_ref[1], plain[1]) > 1e-3  # the skip really changes the output


class _IdentityAttention(torch.nn.Module):
    """Test-only wrapper: runs the reference attention with a diagonal mask, i.e. an identity attention map."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        n = hidden_states.shape[1]
        eye = torch.eye(n, dtype=torch.bool)
        return self.attn(hidden_states, encoder_hidden_states, eye, rotary_emb)


def test_stg_attention_values_matches_identity_attention(tmp_path):
    """STG-A: self-attention with an identity map returns V; the reference gets a diagonal attention mask."""
    ref, ours = build_pair(TINY, tmp_path)
    x, t, ctx, _ = inputs(TINY)
    with torch.no_grad():
        plain = ref(x, t, ctx).sample
        ref.blocks[2].attn1 = _IdentityAttention(ref.blocks[2].attn1)
        perturbed_ref = ref(x, t, ctx).sample
        got = ours(x, t, ctx, skip_self_attention=block_mask(2, 3, samples=[0], blocks=[2])).sample
    assert_close_rel(got[0], perturbed_ref[0])
    assert_close_rel(got[1], plain[1])
    assert max_abs_diff(perturbed_ref[0], plain[0]) > 1e-3


def test_batched_skips_equal_separate_runs(tmp_path):
    """One batch [plain, STG-R, STG-A] equals three separate forwards (what batched guidance relies on)."""
    _, ours = build_pair(TINY, tmp_path)
    x, t, ctx, _ = inputs(TINY, batch=1)
    xb, tb, cb = x.expand(3, -1, -1, -1, -1), t.expand(3), ctx.expand(3, -1, -1)
    with torch.no_grad():
        batched = ours(xb, tb, cb, skip_blocks=block_mask(3, 3, [1], [0, 2]),
                       skip_self_attention=block_mask(3, 3, [2], [1])).sample
        plain = ours(x, t, ctx).sample
        r = ours(x, t, ctx, skip_blocks=block_mask(1, 3, [0], [0, 2])).sample
        a = ours(x, t, ctx, skip_self_attention=block_mask(1, 3, [0], [1])).sample
    for i, single in enumerate((plain, r, a)):
        assert max_abs_diff(batched[i: i + 1], single) <= 1e-5
    assert max_abs_diff(plain, r) > 1e-3 and max_abs_diff(plain, a) > 1e-3
    # An all-False mask is exactly the plain computation.
    with torch.no_grad():
        none = ours(x, t, ctx, skip_blocks=block_mask(1, 3, [], []), skip_self_attention=block_mask(1, 3, [], [])).sample
    assert torch.equal(none, plain)


def test_block_residuals_match_reference_hook(tmp_path):
    """A residual for block 1 equals adding it to block 1's output in the reference (a test-side forward hook)."""
    ref, ours = build_pair(TINY, tmp_path)
    x, t, ctx, _ = inputs(TINY)
    residual = 0.5 * randn(2, 18, 24, seed=7)
    ref.blocks[1].register_forward_hook(lambda mod, args, out: out + residual)
    with torch.no_grad():
        expected = ref(x, t, ctx).sample
        got = ours(x, t, ctx, block_residuals=[None, residual, None]).sample
        zero = ours(x, t, ctx, block_residuals=[torch.zeros_like(residual)] * 3).sample
        plain = ours(x, t, ctx).sample
    assert_close_rel(got, expected)
    assert torch.equal(zero, plain)


def test_block_modulation_is_explicit_and_per_sample(tmp_path):
    """(scale, shift) on block 0's normalised input: zeros change nothing; a shift for sample 1 only moves sample 1,
    and equals the reference with the shift added to block 0's modulated self-attention input."""
    ref, ours = build_pair(TINY, tmp_path)
    x, t, ctx, _ = inputs(TINY)
    shift = torch.zeros(2, 18, 24)
    shift[1] = randn(18, 24, seed=9)
    scale = torch.zeros(2, 18, 24)
    scale[1] = 0.3 * randn(18, 24, seed=10)
    with torch.no_grad():
        plain = ours(x, t, ctx).sample
        zeros = ours(x, t, ctx, block_modulations=[(torch.zeros(2, 18, 24), torch.zeros(2, 18, 24)), None, None]).sample
        got = ours(x, t, ctx, block_modulations=[(scale, shift), None, None]).sample
    assert torch.equal(zeros, plain)
    assert torch.equal(got[0], plain[0])
    assert max_abs_diff(got[1], plain[1]) > 1e-3
    # Reference: modulate the input of the first self-attention with a pre-hook.
    ref.blocks[0].attn1.register_forward_pre_hook(lambda mod, args: (args[0] * (1 + scale) + shift, *args[1:]))
    with torch.no_grad():
        assert_close_rel(got, ref(x, t, ctx).sample)


def test_gradient_checkpointing_same_values_and_grads(tmp_path):
    _, ours = build_pair(TINY, tmp_path)
    x, t, ctx, _ = inputs(TINY)
    ours.train()

    def run():
        ours.zero_grad()
        out = ours(x, t, ctx).sample
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in ours.parameters()]

    out_a, grads_a = run()
    ours.enable_gradient_checkpointing()
    out_b, grads_b = run()
    assert ours.gradient_checkpointing
    assert torch.equal(out_a, out_b)
    assert all(max_abs_diff(a, b) < 1e-6 for a, b in zip(grads_a, grads_b))


def test_save_pretrained_round_trip(tmp_path):
    _, ours = build_pair(TINY_I2V, tmp_path)
    ours.save_pretrained(tmp_path / "ours")
    again = VideoDiT.from_pretrained(tmp_path / "ours")
    x, t, ctx, img = inputs(TINY_I2V)
    with torch.no_grad():
        assert torch.equal(ours(x, t, ctx, img).sample, again(x, t, ctx, img).sample)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x=randn(2, 5, 3, 4, 6, seed=0)), "must have 4 channels"),
        (dict(x=randn(2, 4, 3, 5, 6, seed=0)), "latent height must be a multiple of 2; got 5; nearest valid values: 4, 6"),
        (dict(x=randn(2, 4, 3, 4, 6, seed=0)[:, :, 0]), "must be 5-D"),
        (dict(ctx=randn(2, 512, 15, seed=0)), "text_dim=16"),
        (dict(t=torch.tensor([1.0, 2.0, 3.0])), "timestep must be [B] or [B, N]"),
        (dict(img=randn(2, 257, 8, seed=0)), "takes no encoder_hidden_states_image"),
        (dict(x=randn(2, 4, 3, 4, 6, seed=0).long()), "hidden_states must be a floating-point tensor; got dtype torch.int64"),
        (dict(ctx=torch.zeros(2, 512, 16, device="meta")), "encoder_hidden_states is on meta but the model is on cpu"),
    ],
)
def test_bad_inputs_name_the_rule(change, message, tmp_path):
    torch.manual_seed(0)
    model = VideoDiT(**{"patch_size": (1, 2, 2), "num_heads": 2, "dim": 24, "in_channels": 4, "out_channels": 4,
                        "text_dim": 16, "freq_dim": 32, "ffn_dim": 32, "num_layers": 3})
    x, t, ctx, img = inputs(TINY)
    args = dict(x=x, t=t, ctx=ctx, img=img, **{})
    args.update(change)
    with pytest.raises(ValueError) as err:
        model(args["x"], args["t"], args["ctx"], args["img"])
    assert message in str(err.value)


def test_mixed_precision_inputs_are_cast(tmp_path):
    """fp64 inputs into an fp32 model give the fp32 result (inputs are cast to the weights' dtype)."""
    _, ours = build_pair(TINY, tmp_path)
    x, t, ctx, _ = inputs(TINY)
    with torch.no_grad():
        assert torch.equal(ours(x.double(), t, ctx.double()).sample, ours(x, t, ctx).sample)


def test_i2v_model_requires_image_tokens(tmp_path):
    _, ours = build_pair(TINY_I2V, tmp_path)
    x, t, ctx, _ = inputs(TINY_I2V)
    with pytest.raises(ValueError, match="requires encoder_hidden_states_image"):
        ours(x, t, ctx)


def test_block_mask_rejects_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        block_mask(2, 3, samples=[0], blocks=[3])
