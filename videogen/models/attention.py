"""The DiT's one attention call: PyTorch's SDPA by default, or a backend of diffusers' attention dispatcher.

``attention(q, k, v, backend)`` takes ``[B, heads, L, head_dim]`` tensors (PyTorch's layout). With no backend it
is ``torch.nn.functional.scaled_dot_product_attention`` itself, so the default computation is unchanged; with a
name (``native``, ``flash``, ``sage``, ``xformers``, ``flex``, ...; see ``attention_backends``) it goes through
``diffusers.models.attention_dispatch.dispatch_attention_fn``, which takes ``[B, L, heads, head_dim]``.
``check_attention_backend`` tells, before a model runs, whether a backend is known and installed here.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def attention_backends() -> list[str]:
    """The backend names diffusers' attention dispatcher knows (``AttentionBackendName`` values)."""
    from diffusers.models.attention_dispatch import AttentionBackendName

    return [b.value for b in AttentionBackendName]


def check_attention_backend(name: Optional[str]) -> Optional[str]:
    """``name`` if diffusers' dispatcher knows it and its package is installed (None and ``sdpa``: PyTorch's SDPA,
    returned as None); else a ``ValueError`` that says which package is missing. Backends that fetch kernels from
    the Hugging Face Hub at run time (``*_hub``) are refused: nothing is downloaded while generating."""
    if name in (None, "", "sdpa"):
        return None
    from diffusers.models import attention_dispatch as dispatch

    known = attention_backends()
    if name not in known:
        raise ValueError(f"unknown attention backend {name!r}; diffusers knows: {', '.join(known)} (or sdpa)")
    if name.endswith("_hub"):
        raise ValueError(f"attention backend {name!r} downloads its kernels from the Hugging Face Hub at run time; "
                         "install the package and use the plain backend (e.g. flash, sage) instead")
    check = getattr(dispatch, "_check_attention_backend_requirements", None)
    if check is not None:
        try:
            check(dispatch.AttentionBackendName(name))
        except (RuntimeError, ImportError) as err:
            raise ValueError(f"attention backend {name!r} is not installed here: {err}") from None
    return name


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: Optional[str] = None) -> torch.Tensor:
    """Scaled dot-product attention of ``q, k, v [B, heads, L, head_dim]`` -> ``[B, heads, L_q, head_dim]``, by
    PyTorch's SDPA (``backend`` None) or the named backend of diffusers' dispatcher."""
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v)
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    out = dispatch_attention_fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                backend=AttentionBackendName(backend))
    return out.transpose(1, 2)
