"""Running a job: `driver` (prepare -> execute -> finalize over a `JobPlan`), `scheduler` (shards onto
actors), `resume` (what an existing output allows), `worker` (the Ray actor), `sampling`, `plan`,
`result`, `cluster`, `progress`, `errors`."""
