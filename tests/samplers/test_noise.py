import numpy as np
import pytest
import torch

import samplers
from samplers.analytic import GaussianNet
from samplers.noise import LABEL_STREAM, STEP_STREAM, SampleNoise


def test_start_noise_is_the_documented_philox_scheme():
    # Written out independently of SampleNoise, from the module docstring.
    seed, index = 1234, 7
    bitgen = np.random.Philox(key=[seed, index], counter=[0, 0, 0, 0])  # key words: seed, index
    expected = np.random.Generator(bitgen).standard_normal((2, 3), dtype=np.float32)
    got = SampleNoise(seed, index, 1, scheme="v1").start((2, 3), torch.float32)[0]
    assert np.array_equal(got.numpy(), expected)


def test_step_and_label_streams_follow_the_scheme():
    seed, index, k = 9, 3, 5
    step = np.random.Generator(np.random.Philox(key=[seed, index], counter=[0, STEP_STREAM + k, 1, 0]))
    noise = SampleNoise(seed, index, 1, scheme="v1")
    assert np.array_equal(noise.step(k, torch.zeros(1, 4), draw=1)[0].numpy(), step.standard_normal(4, dtype=np.float32))
    label = np.random.Generator(np.random.Philox(key=[seed, index], counter=[0, LABEL_STREAM, 0, 0])).integers(10)
    assert noise.labels(10).tolist() == [int(label)]


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_noise_of_an_index_does_not_depend_on_batch_layout(scheme):
    a = SampleNoise(0, 0, 8, scheme=scheme).start((3, 4), torch.float32)
    b = SampleNoise(0, 3, 5, scheme=scheme).start((3, 4), torch.float32)
    assert torch.equal(a[3:], b)


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_seeds_are_not_truncated_to_32_bits(scheme):
    a = SampleNoise(5, 0, 1, scheme=scheme).start((16,), torch.float32)
    b = SampleNoise(5 + 2**32, 0, 1, scheme=scheme).start((16,), torch.float32)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_streams_and_draws_are_distinct(scheme):
    noise = SampleNoise(0, 0, 4, scheme=scheme)
    like = torch.zeros(4, 16)
    draws = [noise.start((16,), torch.float32), noise.step(0, like), noise.step(1, like), noise.step(0, like, draw=1)]
    for i in range(len(draws)):
        for j in range(i):
            assert not torch.equal(draws[i], draws[j])


@pytest.mark.parametrize("scheme", ["v1", "v2"])
@pytest.mark.parametrize("name", ["heun", "euler_maruyama"])
def test_sample_rows_depend_only_on_seed_and_index(name, scheme):
    field = samplers.wrap(GaussianNet("flow"), "flow")
    sampler = samplers.build(name, steps=6)
    whole = sampler.sample(8, "cpu", net=field, shape=(2, 3), seed=11, start_index=0, noise_scheme=scheme)
    tail = sampler.sample(5, "cpu", net=field, shape=(2, 3), seed=11, start_index=3, noise_scheme=scheme)
    assert torch.equal(whole[3:], tail)
    other_seed = sampler.sample(5, "cpu", net=field, shape=(2, 3), seed=12, start_index=3, noise_scheme=scheme)
    assert not torch.equal(tail, other_seed)


def test_v1_noise_is_drawn_on_cpu_then_moved(monkeypatch):
    # The device only receives the CPU bits: a "meta" device round trip shows the target device is honoured.
    noise = SampleNoise(0, 0, 2, device="meta", scheme="v1").start((3,), torch.float16)
    assert noise.device.type == "meta" and noise.dtype == torch.float16


@pytest.mark.parametrize("scheme", ["v1", "v2"])
@pytest.mark.parametrize("seed,start", [(-1, 0), (2**64, 0), (0, -3), ("1", 0)])
def test_bad_seed_or_index_is_an_error(seed, start, scheme):
    with pytest.raises(ValueError, match="seed|start_index"):
        SampleNoise(seed, start, 1, scheme=scheme)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_v1_noise_is_the_same_on_cuda():
    cpu = SampleNoise(1, 0, 4, scheme="v1").start((8,), torch.float32)
    cuda = SampleNoise(1, 0, 4, device="cuda", scheme="v1").start((8,), torch.float32)
    assert torch.equal(cpu, cuda.cpu())


# -- scheme v2 ------------------------------------------------------------------------------------
from samplers.noise import (  # noqa: E402
    DEFAULT_NOISE_SCHEME, NOISE_SCHEMES, START_STREAM, NoiseProducer, scheme_named, v2, v2_kernel,
)

MASK = 0xFFFFFFFF


def philox_reference(counter, key, rounds=v2.ROUNDS):
    """Philox4x32-R on Python ints, written from Salmon et al. 2011 / Random123."""
    c, (k0, k1) = list(counter), key
    for _ in range(rounds):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & MASK, (p0 >> 32) ^ c[3] ^ k1, p0 & MASK]
        k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
    return c


def word_reference(seed, index, stream, draw, position):
    counter = [stream + 2**20 * draw, position // 4, index & MASK, index >> 32]
    return philox_reference(counter, [seed & MASK, seed >> 32])[position % 4]


def normal_reference(w):
    """The v2 transform from the docstring with Python ints and numpy float32 (the table is the module's)."""
    x = (w | 1) - ((w | 1) >> 31 << 32)  # two's-complement int32
    b = int(np.array(np.float32(x)).view(np.uint32))
    a, slope = v2._table_cpu()[b >> 15]
    return np.float32(a) + np.float32(slope) * np.float32(b & 0x7FFF)


@pytest.mark.parametrize("counter,key,expected", [  # Random123 kat_vectors, philox4x32 10 rounds
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([MASK] * 4, [MASK, MASK], [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
])
def test_philox_matches_the_published_known_answers(counter, key, expected):
    assert philox_reference(counter, key, rounds=10) == expected
    got = v2.philox([torch.tensor([[c]]) for c in counter], key[0] + (key[1] << 32), rounds=10)
    assert [int(w) for w in got] == expected
    # The scheme's 7 rounds: torch and NumPy equal the reference.
    seven = philox_reference(counter, key)
    assert [int(w) for w in v2.philox([torch.tensor([[c]]) for c in counter], key[0] + (key[1] << 32))] == seven
    index = np.array([counter[2] + (counter[3] << 32)], dtype=np.uint64)
    got_np = v2.philox_np(key[0] + (key[1] << 32), index, counter[0], np.array([counter[1]], dtype=np.uint64))
    assert [int(w[0, 0]) for w in got_np] == seven


@pytest.mark.parametrize("seed,index,stream,draw", [(0, 0, 0, 0), (2**64 - 1, 2**63 - 5, 2**20 - 1, 2**12 - 1),
                                                    (123456789123, 2**40 + 3, 7, 2)])
def test_v2_words_and_normals_equal_the_reference(seed, index, stream, draw):
    count = 11  # not a multiple of 4: the last block is cut
    got = v2.words(seed, torch.tensor([index, index + 1]), stream, draw, torch.arange(3))[:, :count]
    expected = [[word_reference(seed, i, stream, draw, p) for p in range(count)] for i in (index, index + 1)]
    assert got.tolist() == expected
    z = SampleNoise(seed, index, 2, scheme="v2").normal(stream, (count,), torch.float32, draw)
    z_ref = np.array([[normal_reference(w) for w in row] for row in expected], dtype=np.float32)
    assert np.array_equal(z.numpy().view(np.uint32), z_ref.view(np.uint32))


def test_v2_transform_equals_the_reference_on_edge_and_random_words():
    rng = np.random.default_rng(0)
    words = [0, 1, 2, 3, 2**31 - 1, 2**31, 2**31 + 1, MASK - 1, MASK, *rng.integers(0, 2**32, 2000).tolist()]
    words += [(1 << e) + d for e in range(32) for d in (-1, 0, 1) if 0 <= (1 << e) + d <= MASK]
    words += [MASK - (1 << e) + d for e in range(32) for d in (-1, 0, 1) if 0 <= MASK - (1 << e) + d <= MASK]
    got = v2.normal_from_words(torch.tensor(words)).numpy()
    expected = np.array([normal_reference(w) for w in words], dtype=np.float32)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("seed,start,n,shape,stream,draw", [
    (0, 0, 3, (11,), 0, 0), (2**64 - 1, 2**63 - 70, 64, (2, 8, 8), 2**20 - 1, 2**12 - 1),
    (123456789123, 2**40 + 3, 5, (3, 5, 7), 7, 2), (2**32 + 5, 2**32 - 2, 4, (1,), 3, 1)])
def test_v2_compiled_numpy_and_torch_paths_give_the_same_bits(seed, start, n, shape, stream, draw):
    # The compiled loop is the CPU's path, NumPy the CPU's path without numba, torch what other devices run.
    cpu = SampleNoise(seed, start, n, scheme="v2").normal(stream, shape, torch.float32, draw)
    count = int(np.prod(shape))
    blocks = -(-count // 4)
    compiled, numpy_path = (np.full((n, 4 * blocks), np.nan, np.float32) for _ in range(2))
    v2_kernel.normal(seed, start, n, stream + v2.MAX_STREAM * draw, blocks, compiled, *v2._table_np())
    v2._normal_np(seed, start, n, stream, draw, blocks, numpy_path)
    torch_path = torch.empty(n, 4 * blocks)
    v2._normal_torch(seed, start, n, stream, draw, blocks, torch_path)
    for out in (compiled, numpy_path, torch_path.numpy()):
        assert np.array_equal(out.view(np.uint32), torch_path.numpy().view(np.uint32))
    assert torch.equal(cpu, torch_path[:, :count].reshape(n, *shape))


def test_v2_uses_the_compiled_loop_and_falls_back_to_numpy_with_the_same_bits(monkeypatch):
    assert v2_kernel.AVAILABLE  # numba is a core dependency
    compiled = SampleNoise(9, 4, 6, scheme="v2").step(3, torch.zeros(6, 3, 9, 9))
    monkeypatch.setattr(v2_kernel, "AVAILABLE", False)
    monkeypatch.setattr(v2_kernel, "compiled", None)  # the NumPy path must not touch it
    assert torch.equal(compiled, SampleNoise(9, 4, 6, scheme="v2").step(3, torch.zeros(6, 3, 9, 9)))


def test_a_process_loads_the_compiled_loop_only_once_it_pays_back(monkeypatch):
    import functools

    loads = []  # a stand-in for numba below: it counts the loads and makes the same bits in NumPy

    @functools.cache
    def compiled():
        loads.append(1)
        return lambda k0, k1, start, n, sd, blocks, out, ta, tb: v2._normal_np(
            int(k0) + (int(k1) << 32), start, n, sd % v2.MAX_STREAM, sd // v2.MAX_STREAM, blocks, out)

    monkeypatch.setattr(v2_kernel, "compiled", compiled)
    monkeypatch.setattr(v2_kernel, "_small_draws", 0)
    monkeypatch.setattr(v2_kernel, "LOAD_AFTER_DRAWS", 3)
    small = [SampleNoise(1, 0, 2, scheme="v2").start((5,), torch.float32) for _ in range(3)]
    assert loads == [] and all(torch.equal(x, small[0]) for x in small)  # small draws: NumPy, no load
    assert torch.equal(SampleNoise(1, 0, 2, scheme="v2").start((5,), torch.float32), small[0]) and loads == [1]
    monkeypatch.setattr(v2_kernel, "_small_draws", 0)
    compiled.cache_clear()
    loads.clear()
    SampleNoise(1, 0, 2, scheme="v2").start((v2_kernel.LOAD_AT_VALUES // 2,), torch.float32)  # one large draw loads it
    assert loads == [1] and v2_kernel.wanted(1)


def test_a_numba_that_cannot_load_leaves_the_numpy_path_with_the_same_bits(monkeypatch):
    import functools

    expected = SampleNoise(7, 3, 4, scheme="v2").start((5, 5), torch.float32)

    @functools.cache
    def compiled():
        raise ImportError("Numba needs NumPy 2.5 or less")

    monkeypatch.setattr(v2_kernel, "compiled", compiled)
    monkeypatch.setattr(v2_kernel, "AVAILABLE", True)
    big = SampleNoise(7, 3, 4, scheme="v2").start((v2_kernel.LOAD_AT_VALUES,), torch.float32)  # asks for the load
    assert not v2_kernel.AVAILABLE and big.shape == (4, v2_kernel.LOAD_AT_VALUES) and torch.isfinite(big).all()
    assert torch.equal(SampleNoise(7, 3, 4, scheme="v2").start((5, 5), torch.float32), expected)


def test_v2_table_is_the_pinned_one_and_close_to_the_exact_inverse_cdf():
    from scipy.special import ndtri

    import hashlib
    assert hashlib.sha256(v2._table_cpu().tobytes()).hexdigest() == v2.TABLE_SHA256
    w = torch.cat([torch.arange(0, 2**32, 997), torch.arange(0, 4096), torch.arange(2**32 - 4096, 2**32),
                   torch.arange(2**31 - 4096, 2**31 + 4096)])
    z = v2.normal_from_words(w).double().numpy()
    f = (w | 1).numpy().astype(np.uint32).view(np.int32).astype(np.float32).astype(np.float64)
    exact = -np.sign(f) * ndtri(np.abs(f) / 2**32)  # sign(x) g(|f|)
    assert np.abs(z - exact).max() < 1e-6
    order = np.argsort(f, kind="stable")
    assert np.all(np.diff(z[order][f[order] > 0]) <= 0) and np.all(np.diff(z[order][f[order] < 0]) <= 0)


def v2_noise(seed=0, start=0, n=256, shape=(4096,), stream=START_STREAM, draw=0):
    return SampleNoise(seed, start, n, scheme="v2").normal(stream, shape, torch.float64, draw).numpy()


def test_v2_moments_and_ks():
    from scipy import stats

    z = v2_noise().ravel()  # 2**20 values
    n = len(z)
    assert abs(z.mean()) < 5 / n**0.5
    assert abs(z.var() - 1) < 5 * (2 / n) ** 0.5
    assert abs(stats.skew(z)) < 5 * (6 / n) ** 0.5
    assert abs(stats.kurtosis(z)) < 5 * (24 / n) ** 0.5
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_v2_draws_are_uncorrelated_across_indices_streams_steps_draws_and_positions():
    base = v2_noise(n=256, shape=(1024,))
    others = {"next index": v2_noise(start=1, n=256, shape=(1024,)), "seed": v2_noise(seed=1, n=256, shape=(1024,)),
              "step 0": v2_noise(stream=STEP_STREAM, n=256, shape=(1024,)),
              "step 1": v2_noise(stream=STEP_STREAM + 1, n=256, shape=(1024,)),
              "draw 1": v2_noise(draw=1, n=256, shape=(1024,)),
              "position + 1": np.roll(base, 1, axis=1), "position + 4": np.roll(base, 4, axis=1)}
    bound = 5 / base.size**0.5
    for name, other in others.items():
        assert abs(np.corrcoef(base.ravel(), other.ravel())[0, 1]) < bound, name
        assert abs(np.corrcoef(base.ravel() ** 2, other.ravel() ** 2)[0, 1]) < bound, name


def test_v2_rows_do_not_depend_on_batch_split_or_pieces(monkeypatch):
    whole = SampleNoise(3, 10, 9, scheme="v2").step(4, torch.zeros(9, 3, 5, 7))
    parts = [SampleNoise(3, 10 + a, b - a, scheme="v2").step(4, torch.zeros(b - a, 3, 5, 7)) for a, b in [(0, 1), (1, 6), (6, 9)]]
    assert torch.equal(whole, torch.cat(parts))
    monkeypatch.setattr(v2_kernel, "AVAILABLE", False)  # the NumPy path, in many small pieces split inside rows
    monkeypatch.setitem(v2.CHUNK, "cpu", 24)
    assert torch.equal(whole, SampleNoise(3, 10, 9, scheme="v2").step(4, torch.zeros(9, 3, 5, 7)))


def test_v2_labels_equal_the_reference_and_are_uniform():
    from scipy import stats

    seed, n = 2**63 + 9, 10
    got = SampleNoise(seed, 5, 3, scheme="v2").labels(n).tolist()
    for i, label in zip(range(5, 8), got):
        w0, w1 = (word_reference(seed, i, LABEL_STREAM, 0, p) for p in (0, 1))
        assert label == ((w0 << 32 | w1) * n) >> 64
    counts = np.bincount(SampleNoise(0, 0, 20000, scheme="v2").labels(n).numpy(), minlength=n)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_schemes_are_named_and_new_work_uses_v2():
    assert NOISE_SCHEMES["v1"].description == "philox4x64(key=seed+2**64*index, counter=[0,stream,draw,0]) float32 ziggurat; v1"
    assert NOISE_SCHEMES["v2"].description.endswith("; v2") and DEFAULT_NOISE_SCHEME == "v2"
    assert torch.equal(SampleNoise(1, 2, 3).start((4,), torch.float32),
                       SampleNoise(1, 2, 3, scheme="v2").start((4,), torch.float32))
    assert not torch.equal(SampleNoise(1, 2, 3).start((4,), torch.float32),
                           SampleNoise(1, 2, 3, scheme="v1").start((4,), torch.float32))
    for name, scheme in NOISE_SCHEMES.items():  # a manifest's noise_scheme names its scheme
        assert scheme_named(scheme.description) == name
    with pytest.raises(ValueError, match="noise scheme 'philox; v9' is not one this seedshard knows \\(v1, v2\\)"):
        scheme_named("philox; v9")


@pytest.mark.parametrize("kwargs,call,match", [
    (dict(scheme="v3"), None, "unknown noise scheme 'v3'; known: v1, v2"),
    (dict(scheme="v2", start_index=2**63), None, "start_index"),
    (dict(scheme="v2"), lambda s: s.step(2**20, torch.zeros(1, 2)), "stream < 2\\*\\*20"),
    (dict(scheme="v2"), lambda s: s.step(0, torch.zeros(1, 2), draw=2**12), "draw < 2\\*\\*12"),
    (dict(scheme="v2"), lambda s: s.labels(0), "num_classes"),
])
def test_bad_scheme_stream_draw_or_classes_is_an_error(kwargs, call, match):
    with pytest.raises(ValueError, match=match):
        noise = SampleNoise(**{"seed": 0, "start_index": 0, "n": 1, **kwargs})
        call(noise)


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_producer_yields_exactly_the_direct_draws(scheme):
    noise = SampleNoise(4, 2, 3, scheme=scheme)
    x = torch.zeros(3, 2, 5, dtype=torch.float64)
    requests = [(0, x, 0), (1, x, 0), (2, x, 0), (2, x, 1), (3, x, 0), (5, x.float(), 0), (6, x.float(), 0)]
    with NoiseProducer(noise) as producer:
        for k, like, draw in requests:
            assert torch.equal(producer.step(k, like, draw), noise.step(k, like, draw))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_v2_is_the_same_bits_on_cuda():
    for shape, dtype in [((3, 64, 64), torch.float32), ((2, 8, 8), torch.float16)]:
        cpu = SampleNoise(2**64 - 3, 2**40, 64, scheme="v2").start(shape, dtype)
        cuda = SampleNoise(2**64 - 3, 2**40, 64, device="cuda", scheme="v2").start(shape, dtype)
        assert torch.equal(cpu, cuda.cpu())
    assert torch.equal(SampleNoise(0, 0, 999, scheme="v2").labels(1000),
                       SampleNoise(0, 0, 999, device="cuda", scheme="v2").labels(1000).cpu())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_producer_on_cuda_yields_exactly_the_direct_draws(scheme):
    noise = SampleNoise(4, 2, 16, device="cuda", scheme=scheme)
    x = torch.zeros(16, 3, 32, 32, device="cuda")
    with NoiseProducer(noise) as producer:
        for k in range(5):
            assert torch.equal(producer.step(k, x), noise.step(k, x))
