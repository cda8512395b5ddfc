# bodycam: `make demo` runs a simulated shift, `make test` the whole suite, `make bench`
# the benchmarks, `make fuzz` a time-boxed fuzz run. Each sets up .venv on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo-out

.PHONY: demo test bench fuzz system-deps virtual-camera clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bodycam needs Python 3.11 or newer; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@rm -rf $(DEMO)
	$(BIN)/bodycam selfcheck --hardware sim --out $(DEMO)/selfcheck
	$(BIN)/bodycam simulate patrol --out $(DEMO)/patrol
	$(BIN)/bodycam verify $(DEMO)/patrol/archive/BC-0001 --trust $(DEMO)/patrol/dock --key $(DEMO)/patrol/dock
	$(BIN)/bodycam export $(DEMO)/patrol/archive/BC-0001 --trust $(DEMO)/patrol/dock --key $(DEMO)/patrol/dock --out $(DEMO)/patrol/export
	@printf '[dock]\ndir = "%s/patrol/dock"\narchive = "%s/patrol/archive"\n' "$(abspath $(DEMO))" "$(abspath $(DEMO))" > $(DEMO)/dock.toml
	@for who in custodian1:custodian custodian2:custodian head:unit_head legal:legal admin:admin; do \
	  echo "demo-$${who%%:*}-pw" | $(BIN)/bodycam dock --config $(DEMO)/dock.toml web-user add $${who%%:*} --role $${who##*:} --password-stdin >/dev/null || exit 1; done
	@echo
	@echo "The custodians' web station on this dock: start it with"
	@echo "  $(BIN)/bodycam dock --config $(DEMO)/dock.toml web"
	@echo "then open https://localhost:8443/ (its certificate is from the dock's CA, $(DEMO)/patrol/dock/ca/ca.crt)"
	@echo "and log in as custodian1 / demo-custodian1-pw (custodian2, head, legal, admin: demo-NAME-pw)"

system-deps:
	@scripts/system-deps.sh

# The Debian 13 chroot the picamera2 tests run in (libcamera's virtual camera), built once
# under /var/cache/bodycam and reused.
virtual-camera:
	@scripts/virtual-camera.sh

# Four workers on two cores: most tests wait on brokers, browsers and simulated devices,
# not the CPU. A file's tests stay on one worker (they share fixtures and fixed ports).
# The tests that measure real time (audio latency, GNSS offsets, watchdogs) run after, on
# their own: beside three other workers a loaded machine moves what they measure.
test: $(STAMP) system-deps virtual-camera
	$(BIN)/python -m pytest -q -n 4 --dist loadfile -m "not realtime"
	$(BIN)/python -m pytest -q -m realtime

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/recording.py
	$(BIN)/python bench/seal.py
	$(BIN)/python bench/sync.py

# The hostile-input properties (tests/test_hostile_*.py) with many more examples, for
# FUZZ_SECONDS of wall time; FUZZ_SEED picks the sequence of runs (the same seed repeats it).
FUZZ_SECONDS ?= 60
FUZZ_SEED    ?= 0
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED)

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
