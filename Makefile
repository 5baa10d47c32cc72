# Small entry points; the scripts/ folder holds the full set-up and test runners.
.PHONY: bench-activity bench-scan

# Activity page benchmark: 10^6 Runs in the PostgreSQL database assay_bench (dropped and
# recreated). Override with e.g. `make bench-activity BENCH_ARGS="--runs 100000"`.
BENCH_ARGS ?= --runs 1000000
bench-activity:
	.venv/bin/python bench/activity.py $(BENCH_ARGS)

# Scan and Profile benchmark (BENCHMARKS.md, "Scan and Profile"): throw-away SQLite and
# PostgreSQL sources. Override with e.g. `make bench-scan SCAN_BENCH_ARGS="--sizes 100000"`.
SCAN_BENCH_ARGS ?= --sizes 100000,1000000,10000000 --backends sqlite,postgresql
bench-scan:
	.venv/bin/python bench/scan_profile.py $(SCAN_BENCH_ARGS)
