"""cobot_lib.engine.muon against torch.optim.Muon (bit for bit in bf16) and numpy's SVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cobot_lib.engine.muon import Muon, newton_schulz, newton_schulz_dtype


def _train(opt_cls, steps: int = 4, **kwargs) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in ((6, 10), (9, 4))]
    opt = opt_cls(params, lr=0.02, weight_decay=0.05, **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_bf16_iteration_takes_torch_muons_steps_bit_for_bit(adjust, nesterov):
    ours = _train(Muon, adjust_lr_fn=adjust, nesterov=nesterov, ns_dtype=torch.bfloat16)
    theirs = _train(torch.optim.Muon, adjust_lr_fn=adjust, nesterov=nesterov)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_default_precision_is_fp32_on_the_cpu_and_bf16_on_cuda():
    assert newton_schulz_dtype(torch.device("cpu")) == torch.float32
    assert newton_schulz_dtype(torch.device("cuda")) == torch.bfloat16
    assert newton_schulz_dtype(torch.device("cpu"), torch.bfloat16) == torch.bfloat16


@pytest.mark.parametrize("shape", [(8, 20), (20, 8), (16, 16)])
def test_fp32_iteration_orthogonalises_with_the_inputs_singular_vectors(shape):
    """NS returns U f(S) V^T: in g's singular bases the result is diagonal (numpy's SVD is the
    oracle), with the quintic's singular values in its known band (about 0.7 to 1.2)."""
    g = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u, s, vt = np.linalg.svd(g.numpy(), full_matrices=False)
    x = newton_schulz(g.float(), torch.float32).double().numpy()
    inner = u.T @ x @ vt.T
    off = inner - np.diag(np.diag(inner))
    assert np.abs(off).max() < 1e-5
    assert np.all((np.diag(inner) > 0.6) & (np.diag(inner) < 1.25)), np.diag(inner)


def test_fp32_iteration_matches_fp64_and_bf16_does_not():
    g = torch.randn(12, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact = newton_schulz(g, torch.float64)
    assert (newton_schulz(g, torch.float32).double() - exact).abs().max() < 1e-5
    assert (newton_schulz(g, torch.bfloat16).double() - exact).abs().max() > 1e-3


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.ones(3))])
    with pytest.raises(ValueError, match="adjust_lr_fn='spectral'"):
        Muon([torch.nn.Parameter(torch.ones(3, 3))], adjust_lr_fn="spectral")
    with pytest.raises(ValueError, match="lr, momentum and weight_decay"):
        Muon([torch.nn.Parameter(torch.ones(3, 3))], lr=-1.0)
