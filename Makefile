# edgesiam — every entry point a person or CI needs. Each target builds what it uses (.venv, Debian
# packages) and is safe to run again.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
APT_PACKAGES := espeak-ng flite sox mosquitto mosquitto-clients chromium openssl ffmpeg festival \
  festvox-kdlpc16k festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph \
  festvox-italp16k festvox-itapc16k festvox-ru festvox-suopuhe-lj festvox-suopuhe-mv festvox-ca-ona-hts \
  postgresql
DATA ?= data
RUNS ?= runs

.PHONY: help venv apt device-venvs dist demo check test test-slow test-arm64 lint data train-all export-all results ood-data results-ood bench measure-device dashboard fleet-bench reliability soak fuzz clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[device,train,export,broker,dev]"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create or update .venv with the workstation extras

apt:  ## install the Debian programs the recipes and tests use (espeak-ng, flite, sox, mosquitto, chromium, ffmpeg)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

data: venv apt  ## prepare every real-data recipe into ./data (cached, idempotent), the validation speakers and sounds through device channels, the validation transitions turned
	$(BIN)/edgesiam data prepare all --root $(DATA)
	for d in speech events; do $(BIN)/edgesiam data render $(DATA)/$$d/val $(foreach c,$(OOD_CHANNELS),--channel $(c)) \
	  --noise $(DATA)/noise -o $(DATA)/ood/$$d-val -q || exit 1; done
	for r in rot30:30 rot90:90 rotuniform:uniform; do $(BIN)/edgesiam data render-imu $(DATA)/hapt/val_transitions \
	  --rotation $${r#*:} -o $(DATA)/ood/motion-val/$${r%%:*} -q || exit 1; done

demo: venv apt  ## the main job end to end: real speech → shipped int8 bundle → enroll → stream through the runtime → MQTT events
	$(BIN)/edgesiam data prepare speech --root $(DATA)
	$(BIN)/edgesiam demo --bundle export/speaker --data $(DATA)

lint: venv  ## ruff format --check, ruff check, mypy (strict) over all of edgesiam/ and tests/support/
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

check: venv  ## the fast loop before pushing: ruff format --check, ruff check, mypy strict over edgesiam/ and tests/support/, the tests that start no service
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow and not integration" -q

dist: venv  ## build the sdist and the wheel a device installs into dist/ (README: on the device)
	PYTHON=$(BIN)/python bash scripts/make_dist.sh dist

device-venvs:  ## the two device-only venvs the device tests use (.venv-litert, .venv-tflite)
	PYTHON=$(PYTHON) bash scripts/make_device_venvs.sh

test: venv apt lint device-venvs  ## the whole default test suite (what CI runs; CI=true: Hypothesis derandomised)
	CI=$${CI:-true} $(BIN)/python -m pytest -m "not slow" -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

test-slow: venv apt device-venvs  ## heavy tests: real data recipes, full training runs
	$(BIN)/python -m pytest -m "slow and not arm64" -q

ARM64_APT := qemu-user-static debootstrap binfmt-support
test-arm64: venv apt device-venvs  ## the device install on a Pi's CPU: aarch64 Debian roots (Bookworm/3.11, Trixie/3.13) under qemu-user, install.sh, events and embeddings vs x86 → runs/arm64.json, runs/model_cost.json (root; cached in .cache/arm64)
	@missing=""; for p in $(ARM64_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	EDGESIAM_DATA=$(DATA) ARM64_REPORT=$(RUNS)/arm64.json $(BIN)/python -m pytest -m arm64 -p no:cacheprovider -rA tests/arm64
	$(BIN)/python scripts/model_cost.py $(BUNDLES)/speaker $(BUNDLES)/events $(BUNDLES)/motion --json $(RUNS)/model_cost.json --markdown

train-all: data  ## train the reference recipes (speaker, speaker-base, events, motion)
	for r in speaker speaker-base events motion; do $(BIN)/edgesiam train configs/$$r.yaml --output $(RUNS)/$$r || exit 1; done

BUNDLES ?= export
export-all: venv  ## export the trained reference models (make train-all first) to gated int8 bundles in export/
	$(BIN)/edgesiam export $(RUNS)/speaker/best.pt -o $(BUNDLES)/speaker --calib $(DATA)/speech/train --heldout $(DATA)/speech/val \
	  $(foreach c,$(OOD_CHANNELS),--threshold-data $(DATA)/ood/speech-val/$(c)) --calib-windows 1000 --l2-in-numpy --overwrite
	$(BIN)/edgesiam export $(RUNS)/speaker-base/best.pt -o $(BUNDLES)/speaker-base --calib $(DATA)/speech/train --heldout $(DATA)/speech/val \
	  $(foreach c,$(OOD_CHANNELS),--threshold-data $(DATA)/ood/speech-val/$(c)) --calib-windows 1000 --l2-in-numpy --overwrite
	$(BIN)/edgesiam export $(RUNS)/events/best.pt -o $(BUNDLES)/events --calib $(DATA)/events/train --heldout $(DATA)/events/val \
	  $(foreach c,$(OOD_CHANNELS),--threshold-data $(DATA)/ood/events-val/$(c)) --calib-windows 1000 --l2-in-numpy --overwrite
	$(BIN)/edgesiam export $(RUNS)/motion/best.pt -o $(BUNDLES)/motion --calib $(DATA)/hapt/train --heldout $(DATA)/hapt/val_transitions \
	  $(foreach r,rot30 rot90 rotuniform,--threshold-data $(DATA)/ood/motion-val/$(r)) --overwrite --l2-in-numpy

bench: venv apt device-venvs  ## export/ against the peers: one-thread latency, pipeline cost, RSS, MQTT end-to-end, held-out accuracy → runs/bench.json, runs/bench.md, runs/bench/
	PYTHON=$(PYTHON) bash scripts/make_peers_venv.sh
	$(BIN)/edgesiam bench --json $(RUNS)/bench.json --plots $(RUNS)/bench --markdown $(RUNS)/bench.md --data $(DATA)

BROKER ?= mqtt://localhost:1883
dashboard: venv  ## the live web dashboard on http://127.0.0.1:8080 (BROKER=mqtt://host:port; history in runs/dashboard)
	$(BIN)/edgesiam dashboard --broker $(BROKER) --data-dir $(RUNS)/dashboard

fleet-bench: venv apt  ## 100 simulated devices × 5 events/s × 60 s through Mosquitto into the dashboard history → runs/fleet.json
	$(BIN)/edgesiam fleet-bench --devices 100 --rate 5 --seconds 60 --json $(RUNS)/fleet.json

measure-device: venv apt device-venvs  ## real-time factor, peak RSS and MQTT latency of a device-only run → runs/device_measures.json
	$(BIN)/python scripts/measure_device.py

EVAL = $(BIN)/edgesiam eval -q --episodes 1000 --json $(RUNS)/$(1)/eval-$(2).json --plots $(RUNS)/$(1)/plots-$(2) --name "edgesiam float" $(RUNS)/$(1)/best.pt $(DATA)/$(3)
EVAL_INT8 = $(BIN)/edgesiam eval -q --episodes 1000 --json $(RUNS)/$(1)/eval-$(2)-int8.json --no-baseline --name "edgesiam int8" $(BUNDLES)/$(1) $(DATA)/$(3)

results: venv  ## evaluate the trained models and shipped bundles on held-out labels → runs/results.md
	$(call EVAL,speaker,test,speech/test)
	$(call EVAL_INT8,speaker,test,speech/test)
	$(call EVAL,events,test,events/test)
	$(call EVAL_INT8,events,test,events/test)
	$(call EVAL,motion,transitions,hapt/transitions)
	$(call EVAL_INT8,motion,transitions,hapt/transitions)
	$(call EVAL,motion,test,hapt/test)
	$(call EVAL_INT8,motion,test,hapt/test)
	$(BIN)/python scripts/results_table.py \
	  "$(RUNS)/speaker/eval-test.json+$(RUNS)/speaker/eval-test-int8.json:speaker — 14 speakers never seen in training (data/speech/test)" \
	  "$(RUNS)/events/eval-test.json+$(RUNS)/events/eval-test-int8.json:events — 7 sound classes never seen in training (data/events/test)" \
	  "$(RUNS)/motion/eval-transitions.json+$(RUNS)/motion/eval-transitions-int8.json:motion — 6 postural transitions never seen in training, subjects 21–30 (data/hapt/transitions)" \
	  "$(RUNS)/motion/eval-test.json+$(RUNS)/motion/eval-test-int8.json:motion — the 6 trained activities, subjects 21–30 never seen (data/hapt/test)" > $(RUNS)/results.md
	cat $(RUNS)/results.md

OOD_CHANNELS := gsm amr-nb ulaw cheap-mic far-field
# report:dataset — <bundle>.<set> reports are leave-one-corpus-out sets (corpora no recipe trains on)
OOD_SETS := speaker:speech events:events speaker.speech-tuxpaint:speech-tuxpaint \
  events.events-extra:events-extra
MOTION_SETS := clean rot30 rot90 rotuniform units transitions basicmotions basicmotions-all
MOTION_BUNDLE ?= $(BUNDLES)/motion
MOTION_NAME ?= edgesiam int8
ood-data: venv apt  ## render the held-out audio sets through device channels (phone codecs, cheap mic, far field) and the IMU test set turned and in other units → data/ood/
	$(BIN)/edgesiam data prepare speech events noise speech-tuxpaint events-extra hapt basicmotions --root $(DATA)
	for s in $(OOD_SETS); do d=$${s#*:}; \
	  $(BIN)/edgesiam data render $(DATA)/$$d/test $(foreach c,$(OOD_CHANNELS),--channel $(c)) \
	    --noise $(DATA)/noise -o $(DATA)/ood/$$d -q || exit 1; done
	for r in rot30:30 rot90:90 rotuniform:uniform; do \
	  $(BIN)/edgesiam data render-imu $(DATA)/hapt/test --rotation $${r#*:} -o $(DATA)/ood/motion/$${r%%:*} -q || exit 1; done
	$(BIN)/edgesiam data render-imu $(DATA)/hapt/test --acc-unit m/s^2 --gyro-unit deg/s -o $(DATA)/ood/motion/units -q
	$(BIN)/edgesiam data render-imu $(DATA)/basicmotions/train $(DATA)/basicmotions/test -o $(DATA)/ood/motion/basicmotions-all -q

results-ood: ood-data  ## the shipped bundles (the base speaker tier as a row of the speaker tables), the classic descriptor (MFCC or per-channel statistics) and the pretrained peers (CAM++ and Resemblyzer for speakers, aisfx for events) on the out-of-domain sets → runs/results-ood.md
	PYTHON=$(PYTHON) bash scripts/make_peers_venv.sh
	mkdir -p $(RUNS)/ood
	for s in $(OOD_SETS); do k=$${s%%:*}; b=$${k%%.*}; d=$${s#*:}; peer="--peer aisfx --peer-root $(DATA)"; \
	  [ $$b = speaker ] && peer="--peer campplus --peer resemblyzer --peer-root $(DATA)"; \
	  for c in clean $(OOD_CHANNELS); do \
	    src=$(DATA)/ood/$$d/$$c; [ $$c = clean ] && src=$(DATA)/$$d/test; \
	    $(BIN)/edgesiam eval -q --episodes 1000 --json $(RUNS)/ood/$$k-$$c.json --name "edgesiam int8" \
	      $$peer $(BUNDLES)/$$b $$src >/dev/null || exit 1; done; done
	for s in $(MOTION_SETS); do case $$s in clean) src=$(DATA)/hapt/test;; \
	  transitions) src=$(DATA)/hapt/transitions;; basicmotions) src=$(DATA)/basicmotions/test;; \
	  *) src=$(DATA)/ood/motion/$$s;; esac; \
	  $(BIN)/edgesiam eval -q --episodes 1000 --json $(RUNS)/ood/motion-$$s.json --name "$(MOTION_NAME)" \
	    $(MOTION_BUNDLE) $$src >/dev/null || exit 1; done
	mkdir -p $(RUNS)/ood-base
	for s in speaker:speech speaker.speech-tuxpaint:speech-tuxpaint; do k=$${s%%:*}; d=$${s#*:}; \
	  for c in clean $(OOD_CHANNELS); do \
	    src=$(DATA)/ood/$$d/$$c; [ $$c = clean ] && src=$(DATA)/$$d/test; \
	    $(BIN)/edgesiam eval -q --episodes 1000 --no-baseline --json $(RUNS)/ood-base/$$k-$$c.json \
	      --name "edgesiam base int8" $(BUNDLES)/speaker-base $$src >/dev/null || exit 1; done; done
	$(BIN)/python scripts/ood_table.py $(RUNS)/ood $(RUNS)/ood-base > $(RUNS)/results-ood.md
	cat $(RUNS)/results-ood.md

RELIABILITY_TESTS = $(wildcard tests/reliability tests/fuzz tests/security)
reliability: venv apt device-venvs  ## the fault suite at full scale: broker and runtime kills, full disk, tampered files, fuzzing, security
	EDGESIAM_RELIABILITY=full $(BIN)/python -m pytest -m "not soak" -s -rA --show-capture=no -p no:cacheprovider $(RELIABILITY_TESTS)

SOAK_SECONDS ?= 3600
soak: venv apt device-venvs  ## one hour of stream at 20x real time through a device-only run: RSS growth and latency drift → runs/soak/
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -m soak -s -p no:cacheprovider tests/reliability/test_soak.py

FUZZ_SECONDS ?= 60
fuzz: venv  ## atheris fuzzing of the file readers, MQTT sensor payloads and commands, FUZZ_SECONDS each (default 60) → /tmp/edgesiam-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) PYTHON=$(BIN)/python bash fuzz/run.sh

clean:  ## remove the virtual environment and caches (data and runs are kept)
	rm -rf $(VENV) .venv-litert .venv-tflite .pytest_cache .mypy_cache .ruff_cache
