"""Proximal L1 steps: exact zeros; FISTA equals the closed-form lasso solution and beats ISTA's rate."""
import numpy as np
import pytest
import torch

from graphprune.learners.prox import FISTA, prox_l1_, soft_threshold


def test_soft_threshold_values():
    z = torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0])
    assert torch.equal(soft_threshold(z, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 1.0]))


def test_ista_step_produces_exact_zeros_only_where_masked():
    t = torch.tensor([0.05, -0.05, 0.5, 0.01])
    mask = torch.tensor([True, True, True, False])
    prox_l1_(t, 0.1, mask)
    assert t.tolist() == pytest.approx([0.0, 0.0, 0.4, 0.01])
    assert (t[:2] == 0).all()


def _lasso_step(opt, x, A, b):
    opt.zero_grad()
    loss = 0.5 * ((A @ x - b) ** 2).sum()
    loss.backward()
    opt.step()


def test_fista_step_is_closed_form_on_orthogonal_lasso():
    """With A = I: argmin ½‖x − b‖² + λ‖x‖₁ = soft(b, λ); one FISTA step with η = 1/L = 1 gets there."""
    b = torch.tensor([3.0, -0.2, 0.7, -2.0, 0.05], dtype=torch.float64)
    lam = 0.5
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = FISTA([x], lr=1.0, lam=lam)
    _lasso_step(opt, x, torch.eye(5, dtype=torch.float64), b)
    assert torch.equal(opt.iterate(x), soft_threshold(b, lam))
    assert (opt.iterate(x)[[1, 4]] == 0).all()


def _kkt_violation(x, A, b, lam):
    g = A.T @ (A @ x - b)
    on = x != 0
    v_on = (g[on] + lam * np.sign(x[on])).abs().max() if on.any() else torch.tensor(0.0)
    v_off = (g[~on].abs() - lam).clamp(min=0).max() if (~on).any() else torch.tensor(0.0)
    return float(max(v_on, v_off))


def test_fista_converges_to_the_lasso_solution():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(30, 10, generator=gen, dtype=torch.float64)
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    lam = 2.0
    lr = 1.0 / float(torch.linalg.matrix_norm(A, 2) ** 2)
    x = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = FISTA([x], lr=lr, lam=lam)
    for _ in range(500):
        _lasso_step(opt, x, A, b)
    opt.finalize()
    assert _kkt_violation(x.detach(), A, b, lam) < 1e-6, "the iterate satisfies the lasso optimality conditions"
    assert (x.detach() == 0).any(), "with this λ some coefficients are exactly zero"


def test_fista_is_faster_than_ista_on_an_ill_conditioned_lasso():
    """FISTA's O(1/k^2) beats ISTA's O(1/k) where conditioning is poor (condition number 100).

    NOTE: on a well-conditioned problem both converge linearly to round-off within ~20 steps, and
    comparing their gaps there compares noise.
    """
    gen = torch.Generator().manual_seed(0)
    u, _, v = torch.linalg.svd(torch.randn(30, 10, generator=gen, dtype=torch.float64), full_matrices=False)
    A = 10 * u @ torch.diag(torch.logspace(0, -2, 10, dtype=torch.float64)) @ v.T
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    lam = 0.1
    lr = 1.0 / float(torch.linalg.matrix_norm(A, 2) ** 2)

    def objective(w):
        return float(0.5 * ((A @ w - b) ** 2).sum() + lam * w.abs().sum())

    x = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = FISTA([x], lr=lr, lam=lam)
    for _ in range(5000):
        _lasso_step(opt, x, A, b)
    best = objective(opt.iterate(x))
    xi, xf = torch.zeros(10, dtype=torch.float64), torch.zeros(10, dtype=torch.float64, requires_grad=True)
    fista = FISTA([xf], lr=lr, lam=lam)
    for _ in range(30):
        xi = soft_threshold(xi - lr * (A.T @ (A @ xi - b)), lr * lam)
        _lasso_step(fista, xf, A, b)
    assert objective(fista.iterate(xf)) - best < 0.5 * (objective(xi) - best)


def test_fista_rejects_bad_settings():
    with pytest.raises(ValueError):
        FISTA([torch.zeros(1, requires_grad=True)], lr=0.0, lam=1.0)


def _undefended(x):
    """A loss whose gradient is 0: only the L1 prox moves ``x``."""
    return (x * 0.0).sum()


@pytest.mark.parametrize("nonnegative", [False, True])
def test_fista_momentum_past_zero_only_without_the_nonnegative_constraint(nonnegative):
    """From 1, shrinking 0.3 a step: FISTA's extrapolation carries the point the forward pass sees (the
    parameter) past 0; with ``nonnegative`` parameter and iterate stop at exactly 0 and stay there."""
    x = torch.ones(1, dtype=torch.float64, requires_grad=True)
    opt = FISTA([x], lr=0.1, lam=3.0, nonnegative=nonnegative)
    seen = []
    for _ in range(12):
        opt.zero_grad()
        _undefended(x).backward()
        opt.step()
        seen.append((float(x), float(opt.iterate(x))))
    if nonnegative:
        assert min(min(p) for p in seen) == 0.0 and seen[-1] == (0.0, 0.0)
    else:
        assert min(p for p, _ in seen) < -0.1


def test_nonnegative_fista_step_is_the_projected_closed_form():
    """A = I, η = 1: argmin ½‖x − b‖² + λ‖x‖₁ over x ≥ 0 is max(b − λ, 0)."""
    b = torch.tensor([3.0, -0.2, 0.7, -2.0, 0.05], dtype=torch.float64)
    x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = FISTA([x], lr=1.0, lam=0.5, nonnegative=True)
    _lasso_step(opt, x, torch.eye(5, dtype=torch.float64), b)
    assert torch.equal(opt.iterate(x), torch.clamp(b - 0.5, min=0.0))


@pytest.mark.parametrize("nonnegative", [False, True])
def test_a_gradient_pushing_through_zero_flips_the_sign_only_without_the_constraint(nonnegative):
    """f(x) = 2x (∇f = 2 > λ = 0.5): the lasso step crosses 0; over x ≥ 0 the minimiser is x = 0."""
    x = torch.full((1,), 0.3, dtype=torch.float64, requires_grad=True)
    opt = FISTA([x], lr=0.1, lam=0.5, nonnegative=nonnegative)
    for _ in range(10):
        opt.zero_grad()
        (2.0 * x).sum().backward()
        opt.step()
    opt.finalize()
    assert (float(x) == 0.0) if nonnegative else (float(x) < -0.5)
