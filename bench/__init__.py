"""trailhouse benchmarks: `make bench` (or `python -m bench --help`).

Every figure of one run comes from the same synthetic delivery files, generated at the
start of the run with trailhouse.dev.synth, so ratios between the sections are meaningful
(this machine drifts by up to ~30% between runs: compare within one run only).
Nothing here asserts on timings; the results are printed and written to
bench/results/<timestamp>.json.
"""
