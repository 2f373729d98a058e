"""Guidance: which model passes a denoising step needs, and pure functions that combine their predictions.

A step's predictions are named by ``Pass`` values (text on/off, extra condition on/off, blocks perturbed). Each
guider lists the passes it needs and maps the current estimate to a guided one; ``Guidance`` chains guiders:

    CFG        u + w (c - u)                                       (diffusers / Wan form; active when w > 1)
    CFGZeroStar  a u + w (c - a u), a = <c,u>/|u|^2; zero for the first steps
    APG        c + (w - 1) (ortho + eta * parallel), the parts of (c - u) w.r.t. c; norm clamp, momentum
    MultiCondition  e(0,0) + s_t (e(c,0) - e(0,0)) + s_x (e(c,x) - e(c,0))   (camera motion guidance)
    STG        guided + w (c - perturbed), then rescale k = std(c)/std(guided), k <- r k + (1 - r)

Guiders apply in the order given (put CFG / MultiCondition / APG first, STG after). A guider whose scale makes
it a no-op (CFG w <= 1, others w = 0) or whose [start, stop) window excludes the step asks for no pass.

Camera motion guidance (CMG) is ``MultiCondition`` with the camera as the extra condition; how a pass with
``extra=False`` is materialised (the null camera: a static camera, zeros, or the adapter not run) is the camera
pipeline's choice. ``camera_guidance`` builds the whole chain the command line names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch


@dataclass(frozen=True)
class Pass:
    """One model evaluation: text condition on/off, extra condition (camera, trajectory) on/off, perturbed blocks."""

    text: bool = True
    extra: bool = True
    skip_blocks: tuple[int, ...] = ()  # STG-R: these blocks return their input
    skip_attention: tuple[int, ...] = ()  # STG-A: these blocks' self-attention returns V


COND = Pass()
UNCOND = Pass(text=False)
NULL = Pass(text=False, extra=False)
TEXT_ONLY = Pass(text=True, extra=False)


# ----------------------------------------------------------------------------------------------
# Pure combine functions
# ----------------------------------------------------------------------------------------------


def _per_sample_std(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).std(dim=1).view(-1, *([1] * (x.ndim - 1)))


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``u + w (c - u)``."""
    return uncond + scale * (cond - uncond)


def rescale_to_reference(guided: torch.Tensor, reference: torch.Tensor, factor: float) -> torch.Tensor:
    """Per-sample std rescale: ``k = std(ref)/std(guided)``, ``k <- factor k + (1 - factor)``, ``guided * k``
    (CFG rescale of Lin et al.; STG's rescale with factor 0.7)."""
    if factor == 0:
        return guided
    k = _per_sample_std(reference) / _per_sample_std(guided).clamp_min(1e-12)  # an all-zero guess stays zero
    return guided * (factor * k + (1 - factor))


def cfg_zero_star(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """CFG-Zero*: project the unconditional prediction onto the conditional one, ``a = <c,u>/|u|^2`` per sample."""
    c, u = cond.flatten(1).float(), uncond.flatten(1).float()
    alpha = ((c * u).sum(1) / (u.square().sum(1) + 1e-8)).view(-1, *([1] * (cond.ndim - 1))).to(cond.dtype)
    return cfg(cond, alpha * uncond, scale)


def apg(
    cond: torch.Tensor, uncond: torch.Tensor, scale: float, eta: float = 1.0, norm_threshold: float = 0.0,
    momentum: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Adaptive projected guidance: split ``(w-1)(c-u)`` into parts parallel / orthogonal to ``c`` and keep
    ``ortho + eta * parallel``; ``momentum`` (already accumulated) replaces ``c - u``; norms above
    ``norm_threshold`` are clamped."""
    diff = momentum if momentum is not None else cond - uncond
    dims = tuple(range(1, diff.ndim))
    if norm_threshold > 0:
        norm = diff.norm(p=2, dim=dims, keepdim=True)
        diff = diff * torch.clamp(norm_threshold / norm, max=1.0)
    d, c = diff.double(), torch.nn.functional.normalize(cond.double().flatten(1), dim=1).view_as(cond)
    parallel = (d * c).sum(dim=dims, keepdim=True) * c
    update = (d - parallel) + eta * parallel
    return cond + (scale - 1) * update.to(cond.dtype)


def multi_condition(null: torch.Tensor, text: torch.Tensor, full: torch.Tensor, text_scale: float, extra_scale: float):
    """Nested two-condition guidance ``e(0,0) + s_t (e(c,0) - e(0,0)) + s_x (e(c,x) - e(c,0))``."""
    return null + text_scale * (text - null) + extra_scale * (full - text)


def stg(guided: torch.Tensor, cond: torch.Tensor, perturbed: torch.Tensor, scale: float) -> torch.Tensor:
    """Spatiotemporal skip guidance term: ``guided + w (c - perturbed)``."""
    return guided + scale * (cond - perturbed)


# ----------------------------------------------------------------------------------------------
# Guider objects
# ----------------------------------------------------------------------------------------------


def _check_window(start: float, stop: float) -> None:
    if not 0.0 <= start <= stop <= 1.0:
        raise ValueError(f"guidance window must satisfy 0 <= start <= stop <= 1; got start={start}, stop={stop}")


@dataclass
class Guider:
    """Base: a scale and a ``[start, stop)`` window as fractions of the schedule."""

    scale: float = 1.0
    start: float = field(default=0.0, kw_only=True)
    stop: float = field(default=1.0, kw_only=True)

    def __post_init__(self):
        _check_window(self.start, self.stop)
        if self.scale < 0:
            raise ValueError(f"{type(self).__name__} scale must be >= 0; got {self.scale}")

    def enabled(self) -> bool:
        """Whether the scale makes this guider do anything at all."""
        return self.scale != 0

    def active(self, step: int, num_steps: int) -> bool:
        """Whether this guider acts at ``step`` (of ``num_steps``)."""
        return self.enabled() and self.start <= step / num_steps < self.stop

    def passes(self) -> tuple[Pass, ...]:
        """The predictions this guider reads."""
        raise NotImplementedError

    def apply(self, guided: torch.Tensor, preds: Mapping[Pass, torch.Tensor], step: int, num_steps: int) -> torch.Tensor:
        """Map the current estimate to the guided one."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget per-generation state (momentum buffers)."""


@dataclass
class CFG(Guider):
    """Classifier-free guidance ``u + w (c - u)``; active for ``w > 1`` as in diffusers. ``rescale`` > 0 applies
    guidance rescale against the conditional prediction. CFG-Zero* and APG change only ``guide``."""

    scale: float = 5.0
    rescale: float = 0.0

    def enabled(self) -> bool:
        return self.scale > 1.0

    def passes(self):
        return (COND, UNCOND)

    def guide(self, cond: torch.Tensor, uncond: torch.Tensor, step: int) -> torch.Tensor:
        """The guided prediction from the (current) conditional and the unconditional prediction."""
        return cfg(cond, uncond, self.scale)

    def apply(self, guided, preds, step, num_steps):
        return rescale_to_reference(self.guide(guided, preds[UNCOND], step), preds[COND], self.rescale)


@dataclass
class CFGZeroStar(CFG):
    """CFG-Zero*: optimised unconditional scale, and a zero prediction for the first ``zero_init_steps``."""

    zero_init_steps: int = 1

    def guide(self, cond, uncond, step):
        if step < self.zero_init_steps:
            return torch.zeros_like(cond)
        return cfg_zero_star(cond, uncond, self.scale)


@dataclass
class APG(CFG):
    """Adaptive projected guidance with optional momentum (negative momentum as in the paper) and norm clamp."""

    eta: float = 1.0
    norm_threshold: float = 0.0
    momentum: float = 0.0
    _buffer: Optional[torch.Tensor] = field(default=None, repr=False)

    def guide(self, cond, uncond, step):
        diff = cond - uncond
        if self.momentum != 0:
            self._buffer = diff if self._buffer is None else diff + self.momentum * self._buffer
            diff = self._buffer
        return apg(cond, uncond, self.scale, self.eta, self.norm_threshold, momentum=diff)

    def reset(self):
        self._buffer = None


@dataclass
class MultiCondition(Guider):
    """Separate scales for text and one extra condition (camera motion guidance, CMG):
    ``e(0,0) + s_t (e(c,0) - e(0,0)) + s_x (e(c,x) - e(c,0))``. ``scale`` is the text scale ``s_t``,
    ``extra_scale`` the condition's ``s_x``; the passes are ``NULL`` (0,0), ``TEXT_ONLY`` (c,0) and ``COND`` (c,x)."""

    scale: float = 5.0
    extra_scale: float = 4.0

    def enabled(self) -> bool:
        return self.scale != 1.0 or self.extra_scale != 1.0

    def passes(self):
        return (COND, TEXT_ONLY, NULL)

    def apply(self, guided, preds, step, num_steps):
        return multi_condition(preds[NULL], preds[TEXT_ONLY], guided, self.scale, self.extra_scale)


@dataclass
class STG(Guider):
    """Spatiotemporal skip guidance: ``guided + w (c - e_perturbed)``, the perturbed pass skipping ``blocks``
    (``mode="block"``, STG-R) or making their self-attention return V (``mode="attention"``, STG-A); then the
    std rescale with factor ``rescale`` (1 disables it, as in LTX-Video)."""

    scale: float = 1.0
    blocks: Sequence[int] = (2,)
    mode: str = "block"
    rescale: float = 0.7

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in ("block", "attention"):
            raise ValueError(f"STG mode must be 'block' (STG-R) or 'attention' (STG-A); got {self.mode!r}")
        if not self.blocks:
            raise ValueError("STG needs at least one block index to perturb")
        self.blocks = tuple(int(b) for b in self.blocks)

    @property
    def perturbed(self) -> Pass:
        """The pass with the chosen blocks perturbed."""
        return Pass(skip_blocks=self.blocks) if self.mode == "block" else Pass(skip_attention=self.blocks)

    def passes(self):
        return (COND, self.perturbed)

    def apply(self, guided, preds, step, num_steps):
        out = stg(guided, preds[COND], preds[self.perturbed], self.scale)
        # As in LTX-Video: rescale 1.0 means no rescaling at all.
        return out if self.rescale == 1.0 else rescale_to_reference(out, preds[COND], self.rescale)


class Guidance:
    """A chain of guiders applied in order to the conditional prediction."""

    def __init__(self, *guiders: Guider):
        self.guiders = list(guiders)

    def passes(self, step: int, num_steps: int) -> list[Pass]:
        """The distinct passes this step needs, the conditional one first."""
        needed = [COND]
        for g in self.guiders:
            if g.active(step, num_steps):
                needed += [p for p in g.passes() if p not in needed]
        return needed

    def combine(self, preds: Mapping[Pass, torch.Tensor], step: int, num_steps: int) -> torch.Tensor:
        """The guided prediction from this step's predictions."""
        out = preds[COND]
        for g in self.guiders:
            if g.active(step, num_steps):
                out = g.apply(out, preds, step, num_steps)
        return out

    def reset(self) -> None:
        """Reset every guider's per-generation state."""
        for g in self.guiders:
            g.reset()

    def __repr__(self) -> str:
        return f"Guidance({', '.join(map(repr, self.guiders))})"


def cfg_stg(guidance_scale: float, stg_scale: float = 0.0, stg_blocks=(2,), stg_mode: str = "block") -> Guidance:
    """The guidance a ``generation_config.json`` / the command line names: ``CFG(guidance_scale)``, followed by
    ``STG(stg_scale, stg_blocks, stg_mode)`` when ``stg_scale > 0``."""
    guiders: list[Guider] = [CFG(guidance_scale)]
    if stg_scale > 0:
        guiders.append(STG(stg_scale, blocks=stg_blocks, mode=stg_mode))
    return Guidance(*guiders)


def camera_guidance(
    guidance_scale: float, camera_scale: float = 0.0, stg_scale: float = 0.0, stg_blocks=(2,), stg_mode: str = "block",
    camera_window: tuple[float, float] = (0.0, 1.0),
) -> Guidance:
    """The guidance of a camera-controlled generation.

    ``camera_scale`` 0: ``CFG(guidance_scale)`` on the text alone, the camera in both passes (what VideoX-Fun
    does with its Fun-Control-Camera models). ``camera_scale > 0``: camera motion guidance ``MultiCondition(
    guidance_scale, extra_scale=camera_scale)`` inside ``camera_window`` (the fraction of the schedule where the
    camera is on) and plain CFG outside it, where the camera is off and the camera term would be zero. Then
    ``STG(stg_scale, stg_blocks, stg_mode)`` when ``stg_scale > 0``; every pass of a step is one batched forward.
    """
    start, stop = camera_window
    _check_window(start, stop)
    if camera_scale < 0:
        raise ValueError(f"camera_scale must be >= 0 (0: no camera motion guidance); got {camera_scale}")
    if camera_scale == 0:
        guiders: list[Guider] = [CFG(guidance_scale)]
    else:
        guiders = [MultiCondition(guidance_scale, extra_scale=camera_scale, start=start, stop=stop)]
        if start > 0:
            guiders.insert(0, CFG(guidance_scale, stop=start))
        if stop < 1:
            guiders.append(CFG(guidance_scale, start=stop))
    if stg_scale > 0:
        guiders.append(STG(stg_scale, blocks=stg_blocks, mode=stg_mode))
    return Guidance(*guiders)
