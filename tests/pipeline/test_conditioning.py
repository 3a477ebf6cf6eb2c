"""Conditioning tables: row i of a Parquet table conditions sample i, checked before Ray starts, hashed into the
model identity."""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import samplers
from pipeline.conditioning import ConditioningError, ConditioningTable, column_array, table_identity
from pipeline.config import validate_config
from pipeline.handle import SamplingHandle
from tests.pipeline.jobs import gaussian_job

N = 10


class CondFlow(torch.nn.Module):
    """A flow network whose velocity depends on a class label and an embedding (N, 2, 3) per sample."""

    def forward(self, x, t, class_labels=None, encoder_hidden_states=None):
        shift = class_labels.to(x.dtype)[:, None, None] * 0.1 + encoder_hidden_states.sum(dim=1)[:, None, :]
        return x - shift + t[:, None, None]


class FiveClasses(torch.nn.Module):
    """A flow network with an embedding table of 5 classes (labels 5 and 6 of write_table's do not fit)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(5, 3)

    def forward(self, x, t, class_labels=None, encoder_hidden_states=None):
        return x + self.emb(class_labels)[:, None, :]


def build_cond_flow() -> torch.nn.Module:
    return CondFlow()


def write_table(path, rows=N, row_group_size=4):
    rng = np.random.default_rng(0)
    labels = np.arange(rows) % 7
    emb = rng.standard_normal((rows, 2, 3)).astype(np.float32)
    table = pa.table({"label": labels, "caption": [f"c{i}" for i in range(rows)],
                      "emb": pa.array(emb.tolist(), type=pa.list_(pa.list_(pa.float32(), 3), 2))})
    pq.write_table(table, path, row_group_size=row_group_size)
    return labels, emb


def cond_job(tmp_path, table, **run):
    return gaussian_job(
        str(tmp_path / "out"), run={"num_samples": N, "shard_size": 5, "batch_size": 3, **run},
        model={"factory": "tests.pipeline.test_conditioning:build_cond_flow", "kwargs": {}, "interface": "flow",
               "shape": [1, 3]},
        sampler={"name": "euler", "steps": 4, "time_dist": "uniform"},
        cluster={"num_workers": 1},
        conditioning={"table": str(table), "columns": {"class_labels": "label", "encoder_hidden_states": "emb"}})


def test_row_i_conditions_sample_i(tmp_path):
    labels, emb = write_table(tmp_path / "cond.parquet")
    cfg = cond_job(tmp_path, tmp_path / "cond.parquet")
    ours = SamplingHandle.from_config(cfg).sample(N)  # batches of 3 across row groups of 4
    field = samplers.wrap(CondFlow(), "flow")
    direct = samplers.build("euler", steps=4).sample(
        N, "cpu", net=field, shape=(1, 3), seed=cfg.run.seed,
        net_kwargs={"class_labels": torch.from_numpy(labels), "encoder_hidden_states": torch.from_numpy(emb)})
    assert torch.allclose(ours, direct, rtol=0, atol=1e-6)
    unconditioned = samplers.build("euler", steps=4).sample(
        N, "cpu", net=field, shape=(1, 3), seed=cfg.run.seed,
        net_kwargs={"class_labels": torch.zeros(N, dtype=torch.int64), "encoder_hidden_states": torch.zeros(N, 2, 3)})
    assert not torch.allclose(ours, unconditioned, atol=1e-3)


def test_column_types():
    assert column_array(pa.chunked_array([[1, 2], [3]])).dtype == np.int64
    assert column_array(pa.array([0.5, 1.5])).dtype == np.float32
    tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(np.arange(12, dtype=np.float64).reshape(3, 2, 2))
    assert column_array(tensor).shape == (3, 2, 2) and column_array(tensor).dtype == np.float32
    assert column_array(pa.array([[1.0, 2.0], [3.0, 4.0]])).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ConditioningError, match="ragged"):
        column_array(pa.array([[1.0, 2.0, 3.0], [4.0]]))


def test_table_reads_only_the_rows_asked_for(tmp_path):
    labels, emb = write_table(tmp_path / "cond.parquet", rows=N, row_group_size=3)
    table = ConditioningTable(str(tmp_path / "cond.parquet"), {"class_labels": "label", "e": "emb"})
    for start, stop in [(0, 2), (2, 7), (9, 10), (0, 10)]:
        kw = table.kwargs(start, stop)
        assert kw["class_labels"].tolist() == labels[start:stop].tolist()
        assert torch.equal(kw["e"], torch.from_numpy(emb[start:stop]))


def test_a_table_that_does_not_fit_is_a_clear_error(tmp_path):
    write_table(tmp_path / "short.parquet", rows=N - 1)
    with pytest.raises(ConditioningError, match=r"has 9 rows, fewer than run.num_samples=10 \(row i conditions"):
        table_identity(cond_job(tmp_path, tmp_path / "short.parquet"))
    write_table(tmp_path / "cond.parquet")
    cfg = cond_job(tmp_path, tmp_path / "cond.parquet")
    cfg.conditioning.columns["pooled_projections"] = "pooled"
    with pytest.raises(ConditioningError, match=r"\['pooled'\] not in conditioning.table .*its columns: label, capt"):
        table_identity(cfg)
    with pytest.raises(ConditioningError, match=r"conditioning.table '.*nowhere.parquet': cannot read"):
        table_identity(cond_job(tmp_path, tmp_path / "nowhere.parquet"))


def test_identity_is_the_tables_sha256(tmp_path):
    write_table(tmp_path / "cond.parquet")
    identity = table_identity(cond_job(tmp_path, tmp_path / "cond.parquet"))
    assert identity["sha256"] == hashlib.sha256((tmp_path / "cond.parquet").read_bytes()).hexdigest()
    assert identity["rows"] == N and identity["columns"] == {"class_labels": "label", "encoder_hidden_states": "emb"}


@pytest.mark.slow
def test_ray_job_checks_the_table_first_and_refuses_another_on_resume(ray_local, tmp_path):
    from pipeline.run.driver import JobError, run_job
    from pipeline.output.reader import read_samples

    write_table(tmp_path / "short.parquet", rows=N - 1)
    with pytest.raises(ConditioningError, match="fewer than run.num_samples"):
        run_job(cond_job(tmp_path, tmp_path / "short.parquet"))
    assert not (tmp_path / "out").exists()  # nothing written, no worker started
    write_table(tmp_path / "cond.parquet")
    cfg = cond_job(tmp_path, tmp_path / "cond.parquet")
    manifest = run_job(cfg)
    assert manifest.model["conditioning"]["sha256"] == table_identity(cfg)["sha256"]
    assert torch.allclose(torch.as_tensor(read_samples(cfg.run.output)), SamplingHandle.from_config(cfg).sample(N),
                          rtol=0, atol=1e-6)
    write_table(tmp_path / "cond.parquet", rows=N + 1)  # same URL, other bytes
    with pytest.raises(JobError, match=r'\(conditioning.sha256: "[0-9a-f]{64}" -> "[0-9a-f]{64}"\)'):
        run_job(cfg)


def test_the_manifest_masks_credentials_in_the_table_url(tmp_path):
    from pipeline.run.resume import manifest_config

    cfg = cond_job(tmp_path, "https://user:hunter2@example.org/cond.parquet")
    assert manifest_config(cfg)["conditioning"]["table"] == "https://***@example.org/cond.parquet"


def write_negatives_table(path, rows=N):
    """write_table's columns plus `neg`: per-row negative embeddings (N, 2, 3)."""
    labels, emb = write_table(path, rows)
    neg = np.random.default_rng(1).standard_normal((rows, 2, 3)).astype(np.float32)
    table = pq.read_table(path).append_column("neg", pa.array(neg.tolist(), type=pa.list_(pa.list_(pa.float32(), 3), 2)))
    pq.write_table(table, path, row_group_size=4)
    return labels, emb, neg


def guided_euler(seed, w, cond, guide):
    """CondFlow's samples of indices 0..N-1 by a hand-written 4-step Euler loop with classifier-free guidance:
    v = v(guide) + w (v(cond) - v(guide)), each side with its own keywords."""
    net, grid = CondFlow(), samplers.build("euler", steps=4).sample_t().tolist()
    x = samplers.SampleNoise(seed, 0, N).start((1, 3), torch.float32)
    for t, t_next in zip(grid[:-1], grid[1:]):
        tt = torch.full((N,), t)
        v_cond, v_guide = net(x, tt, **cond), net(x, tt, **guide)
        x = x + (t_next - t) * (v_guide + w * (v_cond - v_guide))
    return x


def test_negative_columns_are_the_classifier_free_guides_keywords(tmp_path):
    """guidance_scale w with negative_columns: v = v(neg) + w (v(cond) - v(neg)) per Euler step, against a
    hand-written loop on the same grid (class labels, which have no negative, stay the same for both)."""
    labels, emb, neg = write_negatives_table(tmp_path / "cond.parquet")
    cfg = cond_job(tmp_path, tmp_path / "cond.parquet")
    data = cfg.resolved()
    data["sampler"]["guidance_scale"] = 3.0
    data["conditioning"]["negative_columns"] = {"encoder_hidden_states": "neg"}
    cfg = validate_config(data)
    ours = SamplingHandle.from_config(cfg).sample(N)  # batches of 3 across row groups of 4
    c = torch.from_numpy(labels)
    x = guided_euler(cfg.run.seed, 3.0, dict(class_labels=c, encoder_hidden_states=torch.from_numpy(emb)),
                     dict(class_labels=c, encoder_hidden_states=torch.from_numpy(neg)))
    assert torch.allclose(ours, x, rtol=0, atol=1e-5), (ours - x).abs().max()
    unguided = SamplingHandle.from_config(cfg).sample(N, guidance_scale=1.0)
    assert not torch.allclose(ours, unguided, atol=1e-3)


def test_negatives_are_checked_and_join_the_identity_only_when_given(tmp_path):
    from pipeline.config import ConfigError
    from pipeline.run.fingerprint import fingerprint_fields

    write_negatives_table(tmp_path / "cond.parquet")
    cfg = cond_job(tmp_path, tmp_path / "cond.parquet")
    plain = table_identity(cfg)
    assert "negative_columns" not in plain and "negative_prompt" not in plain
    assert set(fingerprint_fields(cfg, {"conditioning": plain}, {}, "v", {})["conditioning"]) == {"sha256", "columns"}
    data = cfg.resolved()
    data["conditioning"]["negative_columns"] = {"encoder_hidden_states": "neg"}
    guided = validate_config(data)
    assert table_identity(guided)["negative_columns"] == {"encoder_hidden_states": "neg"}
    fields = fingerprint_fields(guided, {"conditioning": table_identity(guided)}, {}, "v", {})
    assert "negative_columns" not in fields["conditioning"]  # unguided (guidance_scale 1): they change no byte
    data["sampler"]["guidance_scale"] = 2.0
    guided = validate_config(data)
    fields = fingerprint_fields(guided, {"conditioning": table_identity(guided)}, {}, "v", {})
    assert fields["conditioning"]["negative_columns"] == {"encoder_hidden_states": "neg"}
    data["sampler"]["guidance_scale"] = 1.0
    data["conditioning"]["negative_columns"] = {"encoder_hidden_states": "nothing"}
    with pytest.raises(ConditioningError, match=r"conditioning.negative_columns: \['nothing'\] not in conditioning.table"):
        table_identity(validate_config(data))
    data["conditioning"]["negative_columns"] = {"pooled_projections": "neg"}
    with pytest.raises(ConfigError, match=r"negative_columns: keywords \['pooled_projections'\] are not in "
                                          r"conditioning.columns \(class_labels, encoder_hidden_states\)"):
        validate_config(data)
    data["conditioning"] |= {"negative_columns": {}, "negative_prompt": ""}
    with pytest.raises(ConditioningError, match=r"conditioning.negative_prompt: no mapped column is text"):
        table_identity(validate_config(data))
    data["conditioning"] |= {"negative_columns": {"encoder_hidden_states": "caption"}, "negative_prompt": None}
    with pytest.raises(ConditioningError, match=r"text column\(s\) \['caption'\] need conditioning.text_encoder"):
        table_identity(validate_config(data))
    data["conditioning"]["negative_columns"] = {"encoder_hidden_states": "neg"}
    data["model"]["guide"] = {"factory": data["model"]["factory"], "interface": "flow", "shape": [1, 3]}
    with pytest.raises(ConfigError, match=r"cannot be combined with model.guide \(autoguidance\)"):
        validate_config(data)
    data["model"].pop("guide")
    data["sampler"]["guidance_scale"] = 2.0  # negatives are the guide: no num_classes or model.guide needed
    assert validate_config(data).sampler.guidance_scale == 2.0
    data["conditioning"]["negative_columns"] = {}
    with pytest.raises(ConfigError, match=r"sampler.guidance_scale=2.0 needs a guide"):
        validate_config(data)


def test_preflight_names_a_negative_that_does_not_fit_the_network(tmp_path):
    from pipeline.run.driver import prepare

    labels, emb, _ = write_negatives_table(tmp_path / "cond.parquet")
    bad = pq.read_table(tmp_path / "cond.parquet").drop_columns(["neg"]).append_column(
        "neg", pa.array(np.zeros((N, 3, 2), np.float32).tolist(), type=pa.list_(pa.list_(pa.float32(), 2), 3)))
    pq.write_table(bad, tmp_path / "cond.parquet")
    data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
    data["sampler"]["guidance_scale"] = 2.0
    data["conditioning"]["negative_columns"] = {"encoder_hidden_states": "neg"}
    with pytest.raises(Exception, match=r"conditioning negatives \(classifier-free guide\)"):
        prepare(validate_config(data))


def test_a_class_labels_negative_with_num_classes_is_not_silently_ignored(tmp_path):
    """With model.num_classes the guide is the null-label network, which sets class_labels to the null label over
    guide_kwargs: negative_columns {class_labels: ...} changed nothing (two different negative columns gave the same
    bytes). It must be refused naming it, or be what the guide sees."""
    from pipeline.config import ConfigError

    write_negatives_table(tmp_path / "cond.parquet")
    table = pq.read_table(tmp_path / "cond.parquet")
    table = table.append_column("neg_a", pa.array(np.full(N, 3))).append_column("neg_b", pa.array(np.full(N, 5)))
    pq.write_table(table, tmp_path / "cond.parquet", row_group_size=4)

    def sample(column):
        data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
        data["sampler"]["guidance_scale"] = 3.0
        data["model"]["num_classes"] = 7
        data["run"]["labels"] = "uniform"
        data["conditioning"]["negative_columns"] = {"class_labels": column}
        return SamplingHandle.from_config(validate_config(data)).sample(N)

    try:
        a = sample("neg_a")
    except ConfigError as e:
        assert "negative_columns" in str(e) and "class_labels" in str(e) and "num_classes" in str(e)
        return
    assert not torch.equal(a, sample("neg_b"))


def test_a_negative_that_is_the_keywords_own_column_is_refused(tmp_path):
    """negative_columns {encoder_hidden_states: emb} where columns maps encoder_hidden_states to emb too: the guide
    sees the prompt itself, so guidance_scale 3 gave exactly the unguided samples, recorded as guided."""
    from pipeline.config import ConfigError

    write_negatives_table(tmp_path / "cond.parquet")
    data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
    data["sampler"]["guidance_scale"] = 3.0
    data["conditioning"]["negative_columns"] = {"encoder_hidden_states": "emb"}
    with pytest.raises(ConfigError, match=r"negative_columns.*encoder_hidden_states.*'emb'"):
        validate_config(data)


def test_a_negative_prompt_that_every_text_keyword_overrides_is_refused(tmp_path):
    """negative_prompt replaces text columns that have no negative column; when negative_columns covers every text
    keyword it was silently never used, yet recorded in the fingerprint as if it guided the samples."""
    write_negatives_table(tmp_path / "cond.parquet")
    data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
    data["conditioning"] |= {"columns": {"class_labels": "label", "encoder_hidden_states": "caption"},
                             "negative_columns": {"encoder_hidden_states": "neg"}, "negative_prompt": "blurry",
                             "text_encoder": str(tmp_path / "encoder")}
    data["sampler"]["guidance_scale"] = 3.0
    with pytest.raises(ConditioningError, match=r"conditioning.negative_prompt: .*'blurry'"):
        table_identity(validate_config(data))


def test_a_handle_names_a_text_negative_without_an_encoder(tmp_path):
    """SamplingHandle.from_config skips the driver's table checks: a text negative column without
    conditioning.text_encoder failed mid-sampling with "TypeError: 'NoneType' object is not callable"."""
    write_negatives_table(tmp_path / "cond.parquet")
    data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
    data["sampler"]["guidance_scale"] = 3.0
    data["conditioning"]["negative_columns"] = {"encoder_hidden_states": "caption"}
    with pytest.raises(ConditioningError, match=r"\['caption'\] need conditioning.text_encoder"):
        SamplingHandle.from_config(validate_config(data)).sample(N)


def test_ragged_or_null_list_rows_are_refused_even_when_the_first_row_fits():
    with pytest.raises(ConditioningError, match=r"rows are ragged or null \(lengths 1 to 3, 0 null\)"):
        column_array(pa.array([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]]))  # 6 values, 3 rows: 2 per row "fits"
    with pytest.raises(ConditioningError, match=r"ragged or null \(lengths 2 to 2, 1 null\)"):
        column_array(pa.array([[1.0, 2.0], None, [3.0, 4.0]]))
    with pytest.raises(ConditioningError, match="ragged or null"):
        column_array(pa.array([[[1.0], [2.0]], [[3.0, 4.0], []]]))  # the inner level


def test_rows_beyond_the_table_are_a_clear_error(tmp_path):
    write_table(tmp_path / "cond.parquet")
    table = ConditioningTable(str(tmp_path / "cond.parquet"), {"class_labels": "label"})
    with pytest.raises(ConditioningError, match=r"conditioning.table has 10 rows; samples \[8, 12\) need more"):
        table.kwargs(8, 12)


def test_class_labels_from_the_table_are_classifier_free_guided_and_not_replaced_by_run_labels(tmp_path):
    """CFG with model.num_classes and class labels from the table (run.labels none): the guide sees the null label in
    place of the table's, per Euler step as a hand-written loop; run.labels with a mapped class_labels is refused."""
    from pipeline.config import ConfigError

    labels, emb = write_table(tmp_path / "cond.parquet")
    data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
    data["model"]["num_classes"] = 7
    data["sampler"]["guidance_scale"] = 2.0
    cfg = validate_config(data)
    ours = SamplingHandle.from_config(cfg).sample(N)
    e = torch.from_numpy(emb)
    x = guided_euler(cfg.run.seed, 2.0, dict(class_labels=torch.from_numpy(labels), encoder_hidden_states=e),
                     dict(class_labels=torch.full((N,), 7), encoder_hidden_states=e))
    assert torch.allclose(ours, x, rtol=0, atol=1e-5), (ours - x).abs().max()
    data["run"]["labels"] = "balanced"
    with pytest.raises(ConfigError, match=r"run.labels: 'balanced' would replace the class labels conditioning.columns "
                                          r"maps from column 'label'; set run.labels: none"):
        validate_config(data)


@pytest.mark.slow
def test_a_table_rewritten_after_the_driver_hashed_it_fails_the_workers(tmp_path, monkeypatch):
    """The driver records the table's sha256 (and its footer's, which workers check); workers opened the same URL
    unchecked, so a table rewritten in between (same rows, other embeddings) conditioned every shard while the
    manifest recorded the old bytes."""
    import pipeline.run.driver as driver
    from tests.pipeline.jobs import run_in_process

    write_table(tmp_path / "cond.parquet")
    cfg = cond_job(tmp_path, tmp_path / "cond.parquet")
    real = driver.table_identity

    def hashed_then_rewritten(cfg):
        identity = real(cfg)
        table = pq.read_table(tmp_path / "cond.parquet")
        emb = pa.array(np.ones((N, 2, 3), np.float32).tolist(), type=table.schema.field("emb").type)
        pq.write_table(table.set_column(table.schema.get_field_index("emb"), "emb", emb), tmp_path / "cond.parquet")
        return identity

    monkeypatch.setattr(driver, "table_identity", hashed_then_rewritten)
    with pytest.raises(ConditioningError, match=r"conditioning.table .*changed since the job started: its size and "):
        run_in_process(cfg)  # the worker (SamplerWorker, as the actor builds it) checks what it opens


def test_null_rows_in_scalar_or_text_columns_are_refused():
    """An int column with a null became float32 class labels with NaN (a text column's null a None prompt): never
    silently; one line naming the nulls."""
    for column in (pa.array([1, None, 3]), pa.array([0.5, None]), pa.array(["a", None]),
                   pa.array([[1.0, None], [2.0, 3.0]])):
        with pytest.raises(ConditioningError, match=r"null"):
            column_array(column)


def test_the_driver_names_null_rows_before_ray_starts(tmp_path):
    write_table(tmp_path / "cond.parquet")
    table = pq.read_table(tmp_path / "cond.parquet")
    table = table.set_column(0, "label", pa.array([0, 1, 2, 3, 4, 5, None, 0, 1, 2], pa.int64()))
    pq.write_table(table, tmp_path / "cond.parquet", row_group_size=4)
    with pytest.raises(ConditioningError, match=r"'label'.*1 null"):
        table_identity(cond_job(tmp_path, tmp_path / "cond.parquet"))


def test_dictionary_encoded_and_view_columns_are_read_as_their_values(tmp_path):
    """A categorical (dictionary) column, as pandas and polars write them, was a raw 'could not convert string to
    float' (a text one was not even seen as text, so a missing text encoder was not named)."""
    assert column_array(pa.array([3, 1, 3]).dictionary_encode()).tolist() == [3, 1, 3]
    assert column_array(pa.array(["a", "b", "a"]).dictionary_encode()).tolist() == ["a", "b", "a"]
    assert column_array(pa.array(["a", "b"], pa.large_string())).tolist() == ["a", "b"]
    write_table(tmp_path / "cond.parquet")
    table = pq.read_table(tmp_path / "cond.parquet")
    table = table.set_column(1, "caption", table["caption"].dictionary_encode())
    pq.write_table(table, tmp_path / "cond.parquet")
    assert pa.types.is_dictionary(pq.read_schema(tmp_path / "cond.parquet").field("caption").type)
    data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
    data["conditioning"]["columns"] = {"class_labels": "label", "encoder_hidden_states": "caption"}
    with pytest.raises(ConditioningError, match=r"\['caption'\] need conditioning.text_encoder"):
        table_identity(validate_config(data))


def test_class_labels_outside_num_classes_are_refused_before_ray_starts(tmp_path):
    """With model.num_classes, a table label of num_classes is the null label (that sample silently unconditional);
    beyond it or negative an index error mid-run or another class. run.label is refused outside [0, num_classes); the
    table's labels must be too, and be integers."""
    write_table(tmp_path / "cond.parquet")
    table = pq.read_table(tmp_path / "cond.parquet")
    data = cond_job(tmp_path, tmp_path / "cond.parquet").resolved()
    data["model"]["num_classes"] = 7
    for bad, shown in ((7, "7"), (-1, "-1"), (12, "12")):
        labels = pa.array([0, 1, 2, 3, 4, 5, bad, 0, 1, 2])
        pq.write_table(table.set_column(0, "label", labels), tmp_path / "cond.parquet", row_group_size=4)
        with pytest.raises(ConditioningError, match=rf"'label'.*{shown}.*\[0, 7\).*model.num_classes"):
            table_identity(validate_config(data))
    pq.write_table(table.set_column(0, "label", pa.array(np.arange(N) % 7 * 1.0)), tmp_path / "cond.parquet")
    with pytest.raises(ConditioningError, match=r"'label'.*double.*integer"):
        table_identity(validate_config(data))


def test_non_finite_embeddings_are_named_not_blamed_on_the_sampler(tmp_path):
    """A NaN or Inf in an embedding column was reported as 'non-finite samples ... try more steps or another
    time_dist'; the table is the cause and the message must say which column."""
    emb = np.zeros((N, 2, 3), np.float32)
    emb[6, 0, 0] = np.nan
    emb[2, 1, 1] = np.inf
    with pytest.raises(ConditioningError, match=r"2 non-finite"):
        column_array(pa.array(emb.tolist(), type=pa.list_(pa.list_(pa.float32(), 3), 2)))
    write_table(tmp_path / "cond.parquet")
    table = pq.read_table(tmp_path / "cond.parquet")
    bad = pa.array(emb.tolist(), type=table.schema.field("emb").type)
    pq.write_table(table.set_column(2, "emb", bad), tmp_path / "cond.parquet", row_group_size=4)
    with pytest.raises(ConditioningError, match=r"column 'emb'.*non-finite"):
        SamplingHandle.from_config(cond_job(tmp_path, tmp_path / "cond.parquet")).sample(N)


def test_a_tables_class_labels_are_the_stored_labels_and_its_extreme_labels_are_preflighted(tmp_path, capsys):
    """Class labels from the table condition the samples and are stored as their labels (Parquet `label`, so exports
    carry them); preflight runs the rows of the smallest and largest label, so a label the network cannot take is
    one line before anything is written, not an IndexError on a worker; run.labels with them is one problem line."""
    import pyarrow.dataset as ds

    from pipeline.config import ConfigError
    from pipeline.run.driver import prepare
    from tests.pipeline.jobs import run_in_process

    labels, _ = write_table(tmp_path / "cond.parquet")
    cfg = cond_job(tmp_path, tmp_path / "cond.parquet")
    manifest = run_in_process(cfg)
    assert manifest.schema_["labeled"] is True
    stored = ds.dataset(str(tmp_path / "out"), format="parquet").to_table(columns=["index", "label"]).sort_by("index")
    assert stored["label"].to_pylist() == labels.tolist()
    from pipeline.cli import main

    assert main(["inspect", str(tmp_path / "out")]) == 0
    assert "labels from conditioning.table column 'label'" in capsys.readouterr().out
    floats = pq.read_table(tmp_path / "cond.parquet").set_column(0, "label", pa.array(labels.astype(np.float64)))
    pq.write_table(floats, tmp_path / "floats.parquet")
    with pytest.raises(ConditioningError, match=r"class_labels column 'label' is double; class labels are an integer "
                                                r"column$"):
        table_identity(cond_job(tmp_path, tmp_path / "floats.parquet"))

    data = cfg.resolved()
    data["run"]["output"] = str(tmp_path / "other")
    data["model"] |= {"factory": "tests.pipeline.test_conditioning:FiveClasses"}
    with pytest.raises(ConfigError, match=r"^model: one forward pass on one sample at t=1 with conditioning.table row "
                                          r"6 \(class label 6\) on the driver's CPU failed: IndexError"):
        prepare(validate_config(data))
    assert not (tmp_path / "other").exists()
    data["run"]["labels"] = "balanced"
    with pytest.raises(ConfigError) as e:
        validate_config(data)
    assert str(e.value).count("\n") == 0 and "would replace the class labels" in str(e.value)
