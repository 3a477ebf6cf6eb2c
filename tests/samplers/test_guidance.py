import pytest
import torch

import samplers
from samplers.analytic import GaussianNet

COND, GUIDE = GaussianNet("flow", mu=1.0, s=0.5), GaussianNet("flow", mu=-1.0, s=0.9)


def _fields():
    COND.calls = GUIDE.calls = 0
    return samplers.wrap(COND, "flow"), samplers.wrap(GUIDE, "flow")


def test_mixing_formula():
    net, g_net = _fields()
    x = torch.randn(5, 3, dtype=torch.float64)
    got = samplers.GuidedField(net, g_net, 2.5).velocity(x, 0.3)
    cond, guide = COND.data.flow_velocity(x, 0.3), GUIDE.data.flow_velocity(x, 0.3)
    assert torch.allclose(got, guide + 2.5 * (cond - guide), rtol=0, atol=1e-12)


def test_scale_one_does_not_evaluate_the_guide():
    net, g_net = _fields()
    samplers.HeunSampler(steps=4).sample(3, "cpu", net=net, g_net=g_net, guidance_scale=1.0, shape=(2,))
    assert GUIDE.calls == 0 and COND.calls == 7


def test_scale_zero_equals_the_guide_alone():
    net, g_net = _fields()
    sampler = samplers.HeunSampler(steps=4, dtype="float64")
    guided = sampler.sample(3, "cpu", net=net, g_net=g_net, guidance_scale=0.0, shape=(2,), seed=1)
    alone = sampler.sample(3, "cpu", net=g_net, shape=(2,), seed=1)
    assert torch.allclose(guided, alone, rtol=0, atol=1e-12)


def test_guidance_interval_limits_where_the_guide_is_used():
    net, g_net = _fields()
    sampler = samplers.EulerSampler(steps=4, guidance_interval=(0.4, 0.8))  # grid 1, .75, .5, .25
    sampler.sample(2, "cpu", net=net, g_net=g_net, guidance_scale=3.0, shape=(2,))
    assert COND.calls == 4 and GUIDE.calls == 2


def test_null_condition_is_classifier_free_guidance():
    seen = []

    def net(x, t, class_labels=None):
        seen.append(class_labels.clone())
        return x * 0 + class_labels.to(x.dtype)[:, None]

    field = samplers.wrap(net, "flow")
    guide = samplers.null_condition(field, null_label=10)
    labels = torch.tensor([1, 2, 3])
    v = samplers.GuidedField(field, guide, 2.0, net_kwargs={"class_labels": labels}).velocity(torch.zeros(3, 2), 1.0)
    assert [s.tolist() for s in seen] == [[1, 2, 3], [10, 10, 10]]
    assert torch.equal(v[:, 0], 10 + 2.0 * (labels - 10.0))


def test_guide_kwargs_replace_the_networks_keywords_for_the_guide_only():
    seen = []

    def net(x, t, emb=None, scale=None):
        seen.append((emb.tolist(), scale))
        return x * 0 + emb[:, None] * scale

    field = samplers.wrap(net, "flow")
    guided = samplers.GuidedField(field, field, 3.0, net_kwargs={"emb": torch.tensor([1.0, 2.0]), "scale": 2.0},
                                  guide_kwargs={"emb": torch.tensor([0.5, 0.0])})
    v = guided.velocity(torch.zeros(2, 1), 1.0)
    assert seen == [([1.0, 2.0], 2.0), ([0.5, 0.0], 2.0)]  # keywords without a negative stay as they are
    assert torch.equal(v[:, 0], torch.tensor([1.0, 0.0]) + 3.0 * (torch.tensor([2.0, 4.0]) - torch.tensor([1.0, 0.0])))
    assert guided.net_kwargs["emb"].tolist() == [1.0, 2.0]


def test_guide_must_share_the_interface():
    net = samplers.wrap(GaussianNet("flow"), "flow")
    g_net = samplers.wrap(GaussianNet("meanflow"), "meanflow")
    with pytest.raises(TypeError, match="differs"):
        samplers.EulerSampler(steps=2).sample(2, "cpu", net=net, g_net=g_net, guidance_scale=2.0, shape=(2,))


def test_guided_field_is_the_field_for_everything_but_the_network():
    net, g_net = _fields()
    guided = samplers.GuidedField(net, g_net, 2.0)
    assert guided.alpha(0.3) == net.alpha(0.3) and guided.sigma(0.3) == net.sigma(0.3)
    assert guided.diffusion(0.3) == net.diffusion(0.3) and guided.prior_scale(1.0) == net.prior_scale(1.0)
    assert guided.t_max_allowed == 1.0 and guided.interface == "flow" and COND.calls == GUIDE.calls == 0


@pytest.mark.parametrize("quantity", ["velocity", "denoise", "eps", "score", "sde_drift"])
def test_guided_field_mixes_every_quantity(quantity):
    net, g_net = _fields()
    x = torch.randn(4, 3, dtype=torch.float64)
    got = getattr(samplers.GuidedField(net, g_net, 1.5), quantity)(x, 0.6)
    assert torch.equal(got, samplers.mix(getattr(net, quantity)(x, 0.6), getattr(g_net, quantity)(x, 0.6), 1.5))


def test_guidance_interval_is_tested_against_the_last_time():
    cond, guide = GaussianNet("meanflow", 1.0, 0.5), GaussianNet("meanflow", -1.0, 0.9)
    net, g_net = samplers.wrap(cond, "meanflow"), samplers.wrap(guide, "meanflow")
    guided = samplers.GuidedField(net, g_net, 2.0, interval=(0.5, 1.0))
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(guided.average_velocity(x, 0.2, 0.4), net.average_velocity(x, 0.2, 0.4))  # t = 0.4 outside
    inside = guided.average_velocity(x, 0.2, 0.7)
    assert guide.calls == 1 and not torch.equal(inside, net.average_velocity(x, 0.2, 0.7))
