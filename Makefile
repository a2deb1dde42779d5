# Framelog developer entry points.
#   make run  [ARGS="--listen 127.0.0.1:4567 --data-dir ./data"]   build and start the server
#   make test                                                      every check CI runs
#   make bench                                                     benchmarks against kinesalite
#   make soak                                                      the edge agent through 10 minutes of faults
#   make crash                                                     100 kill -9 and 20 power cuts under mixed load
#   make fuzz-api                                                  30 minutes of random requests to every operation
#   make soak-server                                               30 minutes of cameras, records and consumers (soak/)
#   make bench-firehose                                            Firehose to SeaweedFS against a direct upload; freshness; Parquet against pyarrow
#   make firehose-kills                                            Firehose's kill tests at 100,000 records each
#   make cluster                                                   3 nodes on NATS + SeaweedFS behind HAProxy (docs/cluster.md)
#   make test-cluster                                              the real-client suites against that cluster
#   make ... PORTABLE=1                                            build for any x86-64 CPU (no SSE4.2/PCLMUL)
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

# Cargo's target dir lives outside the clone when possible, so CI runs in fresh clones reuse the
# (slow, ~14 min cold) RocksDB build. Override from the environment: CARGO_TARGET_DIR=... make test
FRAMELOG_DEFAULT_TARGET_DIR := $(if $(shell test -w /var/cache && echo yes),/var/cache/framelog/target,$(CURDIR)/target)
CARGO_TARGET_DIR ?= $(FRAMELOG_DEFAULT_TARGET_DIR)
export CARGO_TARGET_DIR

# PORTABLE=1 builds for any x86-64 CPU: an empty RUSTFLAGS overrides the target-cpu in
# .cargo/config.toml (RocksDB's CRC32C then runs in software).
ifeq ($(PORTABLE),1)
export RUSTFLAGS :=
endif

# rustup's default location, in case a non-login shell did not put it on PATH.
export PATH := $(PATH):$(HOME)/.cargo/bin

CARGO ?= cargo
RELEASE_DIR := $(CARGO_TARGET_DIR)/release
FRAMELOG_BIN := $(RELEASE_DIR)/framelog
VENV_PYTHON := $(CURDIR)/.venv/bin/python
ARGS ?=

# The real-client suites that also run against a cluster (FRAMELOG_CLUSTER=1, cluster_helpers.py).
CLUSTER_SUITES := $(addprefix media-tests/python/,test_kds_boto3.py test_kvs_media.py test_kvs_control.py test_kvs_hls.py test_kds_consumers.py test_consumers.py)

.PHONY: setup run test test-cluster cluster bench soak crash fuzz-api soak-server bench-firehose firehose-kills

setup:
	scripts/setup.sh

run: setup
	$(CARGO) build --release -p framelog-server
	exec $(FRAMELOG_BIN) serve $(ARGS)

test: setup
	scripts/disk-room.sh
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) build --release --workspace --all-targets
	$(CARGO) test --release --workspace
	FRAMELOG_BIN=$(FRAMELOG_BIN) $(VENV_PYTHON) -m pytest -q media-tests/python
	FRAMELOG_CLUSTER=1 FRAMELOG_BIN=$(FRAMELOG_BIN) $(VENV_PYTHON) -m pytest -q $(CLUSTER_SUITES)

test-cluster: setup
	$(CARGO) build --release -p framelog-server
	FRAMELOG_CLUSTER=1 FRAMELOG_BIN=$(FRAMELOG_BIN) $(VENV_PYTHON) -m pytest -q $(CLUSTER_SUITES) media-tests/python/test_cluster.py

cluster: setup
	$(CARGO) build --release -p framelog-server
	FRAMELOG_BIN=$(FRAMELOG_BIN) scripts/cluster.sh up

bench: setup
	$(CARGO) build --release -p framelog-server -p framelog-bench -p framelog-edge
	$(RELEASE_DIR)/framelog-bench --framelog-bin $(FRAMELOG_BIN) --kinesalite bench-baseline/node_modules/.bin/kinesalite
	FRAMELOG_BIN=$(FRAMELOG_BIN) $(VENV_PYTHON) media-tests/python/bench_edge_cpu.py --streams 1 16 --json-out edge-cpu.json
	FRAMELOG_BIN=$(FRAMELOG_BIN) $(VENV_PYTHON) media-tests/python/bench_agent_flows.py --json-out agent-flows.json
	FRAMELOG_BIN=$(FRAMELOG_BIN) $(VENV_PYTHON) media-tests/python/bench_analytics.py --json-out analytics.json

# The edge agent's exactly-once run through faults at its full length (10 minutes;
# `make test` runs it for 105 s with 20+ faults).
soak: setup
	$(CARGO) build --release --workspace --all-targets
	FRAMELOG_EDGE_SOAK_SECS=600 $(CARGO) test --release -p framelog-media-tests --test e2e every_frame_arrives_exactly_once

# The crash campaign at full length: 100 kill -9 and 20 power cuts at random moments under mixed
# load, each restart checked (`make test` runs 5 and 3). FRAMELOG_CRASH_SEED repeats a run's
# fault moments. Reports: crash-report.json, crash-report-power-cut.json.
crash: setup
	$(CARGO) build --release --workspace --all-targets
	FRAMELOG_CRASH_KILLS=100 FRAMELOG_POWER_CUTS=20 FRAMELOG_CRASH_REPORT=$(CURDIR)/crash-report.json \
		$(CARGO) test --release -p framelog-media-tests --test e2e acknowledged_data_survives -- --nocapture

# The in-process API fuzzer at full length (`make test` runs it 20 s). FRAMELOG_API_FUZZ_SEED
# replays a failure from the seed it printed.
fuzz-api: setup
	FRAMELOG_API_FUZZ_SECS=1800 $(CARGO) test --release -p framelog-server --test api_fuzz -- --nocapture

# The server soak: 200 cameras of 0.5 MB/s and 20,000 records/s with consumers attached, for 30
# minutes, sampled each minute (soak/soak-report.json, soak/soak.svg). It writes ~190 GB: on a
# smaller disk lower the rate, e.g. SOAK_ARGS="--soak-camera-bytes-per-sec 16000" (the bench refuses
# to start a soak the disk cannot hold).
SOAK_ARGS ?=
# Firehose's kill tests at full length: 100,000 records each to SeaweedFS and to an HTTPS endpoint.
firehose-kills: setup
	$(CARGO) build --release -p framelog-server
	FRAMELOG_FIREHOSE_KILL_RECORDS=100000 FRAMELOG_BIN=$(FRAMELOG_BIN) $(VENV_PYTHON) -m pytest -q -s media-tests/python/test_firehose.py -k kill

# Firehose delivery to SeaweedFS against a direct object_store upload, and freshness (docs/benchmarks.md).
bench-firehose: setup
	$(CARGO) build --release -p framelog-server -p framelog-bench
	$(RELEASE_DIR)/framelog-bench --framelog-bin $(FRAMELOG_BIN) --firehose-only --json-out firehose-bench.json

soak-server: setup
	$(CARGO) build --release -p framelog-server -p framelog-bench
	$(RELEASE_DIR)/framelog-bench --framelog-bin $(FRAMELOG_BIN) --soak-only --soak-out soak --json-out soak/bench-report.json $(SOAK_ARGS)
