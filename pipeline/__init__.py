"""seedshard's distributed engine: job config, shard plan, Ray workers, driver, storage, reader.

    from pipeline import load_config, run_job, read_samples
    manifest = run_job(load_config("configs/demo.yaml", ["run.num_samples=100"]))
    x = read_samples("out/demo", indices=[0, 5, 7])
"""

from .config import ConfigError, JobConfig, load_config
from .run.driver import JobError, run_job
from .output.reader import read_dataset, read_samples

__all__ = ["ConfigError", "JobConfig", "JobError", "load_config", "read_dataset", "read_samples", "run_job"]
