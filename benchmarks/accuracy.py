"""Accuracy per NFE against the exact answer for Gaussian data, with fitted convergence orders.

Data x_0 ~ N(0.5, 0.8^2) per coordinate has exact fields and an exact probability-flow ODE map
(`samplers.analytic`), so every integrator can be scored without a trained network:
- ODE samplers: max |x_0 - exact ODE endpoint| over 256 x 4 coordinates from the same start noise,
  float64; on the edm field with the karras grid (sigma_max 80, sigma_min 0.002, rho 7) and on the
  flow field with the uniform grid. k-diffusion's implementation of the same method runs on the same
  exact denoiser (a k-diffusion model D(x, sigma)), on its own karras sigmas, in the peers' venv.
- Stochastic samplers: the output distribution's mean and variance errors |mean - mu|, |var - s^2|,
  pooled over many coordinates (Monte Carlo: the standard error is printed; orders are fitted only
  over points well above it).
Columns are NFE levels: methods with 2 network calls per step (heun, edm_stochastic, langevin) run
half the steps, so NFE = 2 * steps - 1 (7, 15, 31, ...) where first-order methods use 8, 16, 32, ....
The fitted order p is minus the slope of log(error) against log(NFE) over the last three levels.

    python benchmarks/accuracy.py [--quick] [--no-peers] [--setup-peers]
"""

from __future__ import annotations

import math
from typing import Any

import common
import numpy as np
import torch

import samplers
from samplers.analytic import GaussianData, GaussianNet

DATA = GaussianData(mu=0.5, s=0.8)
KARRAS = {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}
GRIDS = {"edm": ("karras", KARRAS), "flow": ("uniform", None), "meanflow": ("uniform", None)}
TWO_CALLS = {"heun", "edm_stochastic", "langevin"}  # network calls per step (but the last)

# (config name, method kwargs, fields, k-diffusion function of the same method on sigma fields, its kwargs)
ODE = [
    ("euler", {}, ("edm", "flow"), "sample_euler", {}),
    ("heun", {}, ("edm", "flow"), "sample_heun", {}),
    ("dpmpp_2m", {}, ("edm", "flow"), "sample_dpmpp_2m", {}),
    ("ddim", {"eta": 0.0}, ("edm", "flow"), "sample_euler", {}),  # deterministic DDIM = Euler in sigma
    ("euler_jump", {}, ("meanflow",), None, {}),
]
SDE = [
    ("euler_maruyama", {}, ("edm", "flow"), None, {}),
    ("ddim", {"eta": 1.0}, ("edm", "flow"), "sample_euler_ancestral", {"eta": 1.0}),
    ("edm_stochastic", {"S_churn": 10.0}, ("edm",), "sample_heun", {"s_churn": 10.0}),
    ("langevin", {"snr": 0.16}, ("edm", "flow"), None, {}),
]


def steps_for(name: str, nfe: int) -> int:
    return (nfe + 1) // 2 if name in TWO_CALLS else nfe


def ode_start(n: int = 256, dim: int = 4) -> torch.Tensor:
    return samplers.SampleNoise(0, 0, n).start((dim,), torch.float64)


def exact_endpoint(interface: str, x_T: torch.Tensor, t_max: float) -> torch.Tensor:
    return DATA.edm_map(x_T, t_max, 0.0) if interface == "edm" else DATA.flow_map(x_T, t_max, 0.0)


def moments_error(x: torch.Tensor) -> tuple[float, float]:
    return abs(x.mean().item() - DATA.mu), abs(x.var().item() - DATA.s**2)


# -- seedshard ----------------------------------------------------------------------------------------
def seedshard_run(name: str, kwargs: dict[str, Any], interface: str, nfe: int, stochastic: bool,
                  n: int, dim: int) -> tuple[float | tuple[float, float], int]:
    """(error, network calls) of one seedshard run at about `nfe` calls."""
    time_dist, time_kwargs = GRIDS[interface]
    sampler = samplers.build(name, steps=steps_for(name, nfe), time_dist=time_dist, time_kwargs=time_kwargs,
                             dtype="float64", **kwargs)
    net = GaussianNet(interface, DATA.mu, DATA.s)
    field = samplers.wrap(net, interface)
    if stochastic:
        x = sampler.sample(n, "cpu", net=field, shape=(dim,), seed=1)
        return moments_error(x), net.calls
    t_max = float(sampler.sample_t()[0])
    x_T = ode_start() * field.prior_scale(t_max)
    return (sampler.integrate(field, x_T) - exact_endpoint(interface, x_T, t_max)).abs().max().item(), net.calls


# -- k-diffusion (runs in the peers' venv) --------------------------------------------------------------
def peer_handle(request: dict[str, Any]) -> list[Any]:
    """Errors of k-diffusion's `request['fn']` at each NFE level, on the exact Gaussian denoiser."""
    K = common.import_k_diffusion_sampling()
    torch.set_default_dtype(torch.float64)  # k-diffusion's sigmas in float64, like seedshard's grid
    fn, kwargs, stochastic = getattr(K, request["fn"]), request["kwargs"], request["stochastic"]
    out = []
    for nfe in request["nfe"]:
        steps = steps_for(request["name"], nfe)
        sigmas = K.get_sigmas_karras(steps, KARRAS["sigma_min"], KARRAS["sigma_max"], KARRAS["rho"])
        net = GaussianNet("edm", DATA.mu, DATA.s)
        if stochastic:
            torch.manual_seed(1)
            x_T = torch.randn(request["n"], request["dim"]) * sigmas[0]
            x = fn(net, x_T, sigmas, disable=True, **kwargs)
            out.append([moments_error(x), net.calls])
        else:
            x_T = ode_start() * sigmas[0]
            x = fn(net, x_T, sigmas, disable=True, **kwargs)
            out.append([(x - exact_endpoint("edm", x_T, sigmas[0].item())).abs().max().item(), net.calls])
    return out


# -- tables -------------------------------------------------------------------------------------------
def fitted_order(nfe: list[int], errors: list[float], floor: float = 0.0) -> str:
    """-slope of log error vs log NFE over the last three points above 5 x floor; '-' if too few."""
    points = [(n, e) for n, e in zip(nfe, errors) if e > 5 * floor][-3:]
    if len(points) < 2:
        return "-"
    return f"{-np.polyfit(np.log([p[0] for p in points]), np.log([p[1] for p in points]), 1)[0]:.2f}"


def main() -> None:
    args = common.parser(__doc__.splitlines()[0], peers=True).parse_args()
    if args.peer:
        return common.serve(peer_handle)
    torch.set_num_threads(1)
    levels = [8, 16, 32] if args.quick else [8, 16, 32, 64, 128]
    n, dim = (256, 64) if args.quick else (2048, 1024)
    peer = common.PeerProcess(__file__, args.quick) if common.peers_available(args) else None

    def nfe_of(name: str) -> list[int]:
        return [2 * steps_for(name, v) - 1 if name in TWO_CALLS else v for v in levels]

    ode_rows = []
    for name, kwargs, interfaces, k_fn, k_kwargs in ODE:
        label = name + "".join(f" {k}={v:g}" for k, v in kwargs.items())
        for interface in interfaces:
            runs = [seedshard_run(name, kwargs, interface, v, False, n, dim) for v in levels]
            errors = [e for e, _ in runs]
            assert [c for _, c in runs] == nfe_of(name), (name, [c for _, c in runs])
            order = "exact" if max(errors) < 1e-12 else fitted_order(nfe_of(name), errors)
            ode_rows.append((label, interface, "seedshard", *[f"{e:.2e}" for e in errors], order))
            if peer is not None and k_fn is not None and interface == "edm":
                answer = peer.ask({"fn": k_fn, "kwargs": k_kwargs, "name": name, "nfe": levels, "stochastic": False})
                k_errors = [e for e, _ in answer]
                assert [c for _, c in answer] == nfe_of(name), (k_fn, answer)
                ode_rows.append((label, interface, f"k-diffusion {k_fn}", *[f"{e:.2e}" for e in k_errors],
                                 fitted_order(nfe_of(name), k_errors)))

    se_mean, se_var = DATA.s / math.sqrt(n * dim), DATA.s**2 * math.sqrt(2.0 / (n * dim))
    sde_rows = []
    for name, kwargs, interfaces, k_fn, k_kwargs in SDE:
        label = name + "".join(f" {k}={v:g}" for k, v in kwargs.items())
        for interface in interfaces:
            runs = [seedshard_run(name, kwargs, interface, v, True, n, dim) for v in levels]
            sde_rows.append(_sde_row(label, interface, "seedshard", runs, nfe_of(name), se_mean, se_var))
            if peer is not None and k_fn is not None and interface == "edm":
                answer = peer.ask({"fn": k_fn, "kwargs": k_kwargs, "name": name, "nfe": levels, "stochastic": True,
                                   "n": n, "dim": dim})
                sde_rows.append(_sde_row(label, interface, f"k-diffusion {k_fn}", answer, nfe_of(name),
                                         se_mean, se_var))
    if peer is not None:
        peer.close()

    headers = ["sampler", "field", "implementation", *[f"NFE ~{v}" for v in levels], "fitted order"]
    print("ODE samplers: max |x_0 - exact ODE endpoint| (256 x 4 coordinates, float64; edm: karras grid, "
          "sigma_max 80; flow/meanflow: uniform grid)\n")
    print(common.markdown_table(headers, ode_rows))
    print(f"\nStochastic samplers: |mean - mu| / |var - s^2| of {n} x {dim} coordinates (Monte Carlo standard "
          f"error {se_mean:.1e} / {se_var:.1e}); fitted orders of mean / var error over points above 5 standard "
          "errors\n")
    print(common.markdown_table(headers, sde_rows))
    print("\nNFE ~N: N network calls, or 2 * ceil(N / 2) - 1 for heun, edm_stochastic, langevin "
          "(2 calls per step, 1 on the last); counted.")
    print("peers: k-diffusion measured in benchmarks/.peers-venv." if peer is not None else
          "peers: skipped (no benchmarks/.peers-venv; build it with --setup-peers).")
    print(common.machine_note())


def _sde_row(label: str, interface: str, impl: str, runs: list[Any], nfe: list[int], se_mean: float,
             se_var: float) -> tuple[Any, ...]:
    assert [c for _, c in runs] == nfe, (impl, label, runs)
    means, variances = [e[0] for e, _ in runs], [e[1] for e, _ in runs]
    cells = [f"{m:.1e} / {v:.1e}" for m, v in zip(means, variances)]
    order = f"{fitted_order(nfe, means, se_mean)} / {fitted_order(nfe, variances, se_var)}"
    return (label, interface, impl, *cells, order)


if __name__ == "__main__":
    main()
