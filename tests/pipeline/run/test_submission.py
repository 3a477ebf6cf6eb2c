"""run/submission.py: a relative run.output is refused only inside a `ray job submit` entrypoint
(the real submission is tested end to end in tests/e2e/test_job_submit.py)."""

import pytest

from pipeline.config import ConfigError
from pipeline.run.submission import JOB_ENV_VAR, check_output_location


@pytest.mark.parametrize("output", ["/data/run", "s3://bucket/run", "~/run"])
def test_absolute_paths_and_urls_are_fine_in_a_submitted_job(monkeypatch, output):
    monkeypatch.setenv(JOB_ENV_VAR, "{}")
    check_output_location(output)


def test_a_relative_path_is_refused_only_in_a_submitted_job(monkeypatch):
    monkeypatch.delenv(JOB_ENV_VAR, raising=False)
    check_output_location("out/demo")
    monkeypatch.setenv(JOB_ENV_VAR, "{}")
    with pytest.raises(ConfigError, match=r"run.output: .*absolute path or a URL .*\(got 'out/demo'\)"):
        check_output_location("out/demo")
