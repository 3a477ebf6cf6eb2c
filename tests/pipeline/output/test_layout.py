"""A folder is a dataset (pipeline.output.layout): real job outputs opened by the tools users have
(pyarrow, pandas, DuckDB, polars, HF datasets, Ray Data), each seeing exactly the samples."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.run.driver import run_job
from pipeline.output.fs import open_output
from pipeline.output.layout import FORMAT_VERSION, SIDE_DIR, job_version, output_version, side_file, side_path
from pipeline.output.manifest import Manifest, write_manifest
from pipeline.output.reader import read_samples
from tests.pipeline.jobs import gaussian_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, shared_ray, request):
    """{name: (url, stored samples (N, *shape), labels)} of real jobs: digits as uint8 images with FID report
    and grid, and a float16 Gaussian job (non-image samples)."""
    root = tmp_path_factory.mktemp("readers")
    digits = load_config("configs/demo.yaml", [f"run.output={root / 'digits'}", "run.num_samples=50", "run.shard_size=20",
                                               "run.batch_size=25", "run.dtype=uint8", "sampler.steps=2", "run.grid=16",
                                               "run.progress=none"])
    gauss = gaussian_job(str(root / "gauss"), run={"dtype": "float16", "num_samples": 30}, cluster={"num_workers": 1})
    found = {}
    shared_ray.start(request)  # 2 CPUs: the demo's two 1-CPU workers
    for name, cfg in (("digits", digits), ("gauss", gauss)):
        assert run_job(cfg).status == "complete"
        samples, labels = read_samples(cfg.run.output, with_labels=True)
        found[name] = (cfg.run.output, samples, labels)
    return found


def test_the_output_folder_holds_only_shards_beside_the_side_folder(outputs):
    url, _, _ = outputs["digits"]
    assert sorted(os.listdir(url)) == [SIDE_DIR] + [f"shard-0000{k}.parquet" for k in range(3)]
    assert {"manifest.json", "fid.json", "grid.png", "shard-00000.json"} <= set(os.listdir(os.path.join(url, SIDE_DIR)))


def check_rows(indices, samples, labels, expected):
    """Rows in any order: exactly the indices 0..N-1, each with its sample and label."""
    _, x, y = expected
    order = np.argsort(indices)
    assert sorted(indices) == list(range(len(x)))
    np.testing.assert_array_equal(np.asarray(samples)[order], x)
    if y is None:  # unlabelled: null labels (None or NaN, as the reader has them)
        assert all(v is None or v != v for v in list(labels))
    else:
        np.testing.assert_array_equal(np.asarray(labels)[order], y)


@pytest.mark.parametrize("name", ["digits", "gauss"])
def test_pyarrow_dataset_and_pandas_read_the_folder(outputs, name):
    import pandas as pd
    import pyarrow.dataset as pads

    url, x, y = outputs[name]
    table = pads.dataset(url).to_table()
    values = table["sample"].combine_chunks()
    for _ in x.shape[1:]:
        values = values.flatten()
    assert values.type.to_pandas_dtype() == x.dtype  # float16 stays float16
    check_rows(table["index"].to_pylist(), values.to_numpy().reshape(x.shape), table["label"].to_numpy(), outputs[name])
    df = pd.read_parquet(url)
    assert list(df.columns) == list(table.column_names)  # nothing from the side folder
    samples = np.stack([_unnest(cell) for cell in df["sample"]])  # nested object arrays: one level per axis
    assert samples.dtype == x.dtype
    check_rows(df["index"].tolist(), samples, df["label"].to_numpy(), outputs[name])


def _unnest(cell):
    """One pandas cell of nested object arrays -> an ndarray."""
    return np.stack([_unnest(c) for c in cell]) if cell.dtype == object else cell


@pytest.mark.parametrize("name", ["digits", "gauss"])
def test_duckdb_reads_the_glob_and_the_folder(outputs, name):
    import duckdb

    url, x, y = outputs[name]
    for source in (f"{url}/*.parquet", url):
        rows = duckdb.sql(f"select index, label, sample from read_parquet('{source}') order by index").fetchall()
        assert [r[0] for r in rows] == list(range(len(x)))
        samples = np.array([r[2] for r in rows])  # nested lists: the shape is kept; float16 comes back as float32
        np.testing.assert_array_equal(samples.astype(x.dtype), x)
        assert [r[1] for r in rows] == (y.tolist() if y is not None else [None] * len(x))


@pytest.mark.parametrize("name", ["digits", "gauss"])
def test_polars_reads_the_glob_and_refuses_the_folder(outputs, name):
    import polars as pl

    url, x, y = outputs[name]
    df = pl.scan_parquet(f"{url}/*.parquet").collect()
    assert df.schema["sample"] == pl.Array(pl.UInt8 if x.dtype == np.uint8 else pl.Float16, x.shape[1:])
    check_rows(df["index"].to_list(), df["sample"].to_numpy(), df["label"].to_numpy(), outputs[name])
    with pytest.raises(Exception, match="glob"):  # documented: polars refuses a folder with non-Parquet files
        pl.scan_parquet(url).collect()


@pytest.mark.parametrize("name", ["digits", "gauss"])
def test_hf_datasets_reads_the_folder_with_shape_dtype_and_images(outputs, name):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    url, x, y = outputs[name]
    ds = datasets.load_dataset("parquet", data_dir=url, split="train", cache_dir=os.path.join(url, "..", f"hf-{name}"))
    feature = ds.features["sample"]
    for d in x.shape[1:]:
        assert feature.length == d
        feature = feature.feature
    assert feature.dtype == x.dtype.name
    table = ds.with_format("numpy", dtype=x.dtype)[:]
    assert table["sample"].dtype == x.dtype and table["sample"].shape == x.shape
    check_rows(table["index"].tolist(), table["sample"], table["label"], outputs[name])
    if name == "digits":
        assert isinstance(ds.features["image"], datasets.Image)
        for row in ds.select(range(5)):
            assert isinstance(row["image"], Image.Image) and row["image"].mode == "L"
            np.testing.assert_array_equal(np.asarray(row["image"]), x[row["index"], 0])
    else:
        assert "image" not in ds.features


def test_ray_data_reads_the_folder_and_read_dataset_keeps_tensors_and_images(outputs, ray_local):
    from pipeline.output.reader import read_dataset

    url, x, y = outputs["digits"]
    assert ray_local.data.read_parquet(url).count() == len(x)  # the side folder is skipped
    batch = read_dataset(url).take_batch(len(x), batch_format="numpy")
    assert batch["sample"].shape == x.shape and batch["sample"].dtype == np.uint8
    check_rows(batch["index"].tolist(), batch["sample"], batch["label"], outputs["digits"])
    order = np.argsort(batch["index"])
    np.testing.assert_array_equal(batch["image"][order], x[:, 0])  # grayscale (H, W), as read_images gives
    url, x, y = outputs["gauss"]
    batch = read_dataset(url).take_batch(len(x), batch_format="numpy")
    assert batch["sample"].dtype == np.float16 and "image" not in batch
    check_rows(batch["index"].tolist(), batch["sample"], batch["label"], outputs["gauss"])


def test_output_version_side_paths_and_job_version(tmp_path):
    fs, root = open_output(str(tmp_path))
    assert FORMAT_VERSION == 2 and output_version(fs, root) == 2  # a new output
    assert side_path(root, "lease.json") == f"{root}/{SIDE_DIR}/lease.json" == side_file(fs, root, "lease.json")
    assert side_path("s3://b/run/", "fid.json", 1) == "s3://b/run/fid.json"
    manifest = Manifest(status="running", config={}, sampler_state={"name": "x"}, model={}, schema={},
                        noise_scheme="n", num_samples=0, format_version=1)
    write_manifest(fs, root, manifest)
    assert output_version(fs, root) == 1 and side_file(fs, root, "grid.png") == f"{root}/grid.png"
    assert job_version(fs, root, overwrite=False) == 1 and job_version(fs, root, overwrite=True) == 2
    with pytest.raises(ValueError, match="format_version 3"):
        side_path(root, "x", 3)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "shard-00000.json").write_text("{}")  # a version-1 sidecar, its manifest lost
    assert output_version(*open_output(str(tmp_path / "old"))) == 1
