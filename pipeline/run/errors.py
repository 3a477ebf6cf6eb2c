"""The error a job raises when it cannot start or could not finish."""


class JobError(RuntimeError):
    """A job that cannot start or could not finish; finished shards are kept."""
