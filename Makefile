# Small entry points; the scripts/ folder holds the full set-up and test runners.
.PHONY: bench-activity bench-scan bench-checks bench-load bench-scaleout bench-finish faults

# Activity page benchmark: 10^6 Runs in the PostgreSQL database assay_bench (dropped and
# recreated). Override with e.g. `make bench-activity BENCH_ARGS="--runs 100000"`; 10^7 Runs
# (about 12 min of seeding on 2 cores): `make bench-activity BENCH_ARGS="--runs 10000000"`.
BENCH_ARGS ?= --runs 1000000
bench-activity:
	.venv/bin/python bench/activity.py $(BENCH_ARGS)

# Scan and Profile benchmark (BENCHMARKS.md, "Scan and Profile"): throw-away SQLite,
# PostgreSQL and DuckDB sources at 10^6 and 10^7 rows, MariaDB at 10^6, Assay alternating with
# the hand-written SQL. Override with e.g. `make bench-scan SCAN_BENCH_ARGS="--sizes 100000"`.
SCAN_BENCH_ARGS ?= --sizes 1000000,10000000 --backends postgresql,sqlite,duckdb --repeat 7
SCAN_BENCH_MARIADB_ARGS ?= --sizes 1000000 --backends mariadb --repeat 7
bench-scan:
	.venv/bin/python bench/scan_profile.py $(SCAN_BENCH_ARGS)
	.venv/bin/python bench/scan_profile.py $(SCAN_BENCH_MARIADB_ARGS)

# Checks and anomalies lists: 10^6 anomalies and 10^5 checks in the PostgreSQL database
# assay_bench_checks (dropped and recreated). Override with e.g.
# `make bench-checks CHECKS_BENCH_ARGS="--anomalies 100000 --checks 10000"`.
CHECKS_BENCH_ARGS ?= --anomalies 1000000 --checks 100000
bench-checks:
	.venv/bin/python bench/checks_anomalies.py $(CHECKS_BENCH_ARGS)

# Under load (BENCHMARKS.md, "Under load"): production deployment (gunicorn, 2 Run worker
# processes, PostgreSQL database assay_loadbench dropped and recreated, Redis on 6432) with 10^6
# seeded Runs; locust: 50 users polling Run pages, 5 browsing Activity, for LOAD_TIME.
LOAD_BENCH_ARGS ?= --runs 1000000 --time 120s
bench-load:
	bash -c 'source scripts/_bootstrap.sh && bootstrap "[test,bench]"'
	.venv/bin/python bench/load.py $(LOAD_BENCH_ARGS)

# Scale-out (BENCHMARKS.md, "Scale-out"): 1, 2 and 4 Run worker processes (concurrency 1)
# draining 1,000 small Profiles each, alternating; PostgreSQL database assay_loadbench_scaleout
# (dropped and recreated), Redis on 6432. Override e.g. SCALEOUT_ARGS="--runs 200 --order 1,2".
SCALEOUT_ARGS ?= --runs 1000 --order 1,2,4,4,2,1 --idle 10
bench-scaleout:
	.venv/bin/python bench/scaleout.py $(SCALEOUT_ARGS)

# What a Run's finish costs the rollup (BENCHMARKS.md, under "Scale-out"): the triggers of runs
# 0010 and of the latest migration, and none, side by side in PostgreSQL databases
# assay_trigbench_{before,after,none} (dropped and recreated, dropped at the end), then SQLite
# files. Override e.g. FINISH_ARGS="--rounds 20 --no-sqlite".
FINISH_ARGS ?= --rounds 10 --batch 200
bench-finish:
	.venv/bin/python bench/finish_cost.py $(FINISH_ARGS)

# Fault injection (RELIABILITY.md): a private PostgreSQL cluster (port 55490) and Redis (6390)
# with every Procfile process; kill, SIGSTOP, database and broker restarts. Measured times go
# to var/faults-gw0.json. Override with e.g. `make faults FAULTS_TRIALS=10`.
FAULTS_TRIALS ?= 5
FAULTS_BACKLOG ?= 1000
faults:
	DATABASE_URL=$${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/assay} \
	ASSAY_TEST_BROKER=redis FAULTS_TRIALS=$(FAULTS_TRIALS) FAULTS_BACKLOG=$(FAULTS_BACKLOG) \
	.venv/bin/python -m pytest tests/test_faults.py -m faults -v
