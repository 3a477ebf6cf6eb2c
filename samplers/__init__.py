"""seedshard samplers: pure-torch ODE/SDE integrators for diffusion and flow-matching models.

    field = samplers.wrap(net, "flow")                    # or "edm", "vp_eps", "vp_v", "vp_x0", "meanflow"
    sampler = samplers.build("heun", steps=32)
    x = sampler.sample(16, "cpu", net=field, shape=(1, 8, 8), seed=0)
    samplers.from_state(sampler.save())                   # the same sampler, bit for bit

Imports nothing from ray, pyarrow, fsspec or pipeline.
"""

from .base import Sampler, SamplerStateError
from .ddim import DDIMSampler
from .dpmpp_2m import DPMSolverPP2MSampler
from .edm_stochastic import EDMStochasticSampler
from .euler import EulerSampler
from .euler_jump import EulerJumpSampler
from .euler_maruyama import EulerMaruyamaSampler
from .gaussian_noise import GaussianNoiseSampler
from .guidance import GuidedField, mix, null_condition
from .heun import HeunSampler
from .langevin import LangevinSampler
from .interfaces import (
    INTERFACES, EDMField, Field, FlowField, MeanFlowField, VPEpsField, VPVField, VPX0Field, grid_coverage_warning, wrap,
)
from .noise import NOISE_SCHEME, NOISE_SCHEMES, NoiseProducer, SampleNoise
from .registry import SAMPLER_NAMES, SAMPLERS, build, from_state, sampler_class
from .schedules import DEFAULT_SAMPLING_TIME_KWARGS, TIME_DISTS, time_grid
from .step import StepSampler

__all__ = [
    "DDIMSampler", "DEFAULT_SAMPLING_TIME_KWARGS", "DPMSolverPP2MSampler", "EDMField", "EDMStochasticSampler",
    "EulerJumpSampler", "EulerMaruyamaSampler", "EulerSampler", "Field", "FlowField", "GaussianNoiseSampler", "GuidedField",
    "HeunSampler", "INTERFACES", "LangevinSampler", "MeanFlowField", "NOISE_SCHEME", "NOISE_SCHEMES", "NoiseProducer",
    "SAMPLERS", "SAMPLER_NAMES", "SampleNoise", "Sampler", "SamplerStateError", "StepSampler", "TIME_DISTS", "VPEpsField",
    "VPVField", "VPX0Field", "build", "from_state", "grid_coverage_warning", "mix", "null_condition", "sampler_class",
    "time_grid", "wrap",
]
