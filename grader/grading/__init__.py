"""The grade contract and the engine: what a grade is (`contract`), the one place many answers are graded
(`engine`), its cache, concurrency limit and review policy, and the row codec every output uses."""
