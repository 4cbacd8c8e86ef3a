# make demo: set up .venv and start the app on the shipped models.
# make test: set up .venv and run ruff and the tests.
# make test-fast: ruff and the fast tier (pytest -m "not slow": nothing trained, no browser), in under a minute.
# make models: rebuild assets/ from scratch (fetch data, train, export) with fixed seeds.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-fast lint venv npm bench models clean

$(STAMP): requirements.txt requirements-dev.txt requirements-mediapipe.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-mediapipe.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# The browser backend's npm modules (LiteRT.js, fast-png), exactly as web/package-lock.json pins
# them, into git-ignored web/node_modules. Without npm the page loads the same versions from a CDN.
NPM_STAMP := web/node_modules/.installed

$(NPM_STAMP): web/package.json web/package-lock.json
	@if command -v npm >/dev/null; then \
		cd web && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the page will load LiteRT.js from a CDN (see README, In the browser)"; fi

npm: $(NPM_STAMP)

demo: $(STAMP) $(NPM_STAMP)
	$(PY) app.py

# The browser test drives Debian's chromium; install it where apt-get can (CI runs as root).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	-command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null

test: $(STAMP) $(NPM_STAMP) $(CHROMIUM)
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: $(STAMP) $(NPM_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow" -q -n 2

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP) $(NPM_STAMP)
	$(PY) -m pip install --quiet --no-deps -r requirements-bench.txt
	$(PY) -m bench.inference
	$(PY) -m bench.int8_kernels
	$(PY) -m bench.portable
	$(PY) -m bench.browser
	$(PY) -m bench.export_kit
	$(PY) -m bench.app_latency
	$(PY) -m bench.train_speed

# The shipped demo models. Each step is a plain command a user can copy.
# Two runs, as they were run (bench/results/merges.md, "Capacity where the image is sharp" and
# "Longer, at a falling rate"): base 20 filters capped at 96 with the core class from the start,
# then the same recipe from its weights at a third of the rate; its files are copied to assets/nuclei.
NUCLEI_RECIPE := --data data/bbbc007 data/nuclei-sim --mode instance --name nuclei \
	--description "Fluorescent nuclei (BBBC007 and simulated), instance segmentation with watershed" \
	--input-size 256 --depth 4 --base-filters 20 --max-filters 96 --batch-size 4 --samples-per-epoch 160 \
	--val-fraction 0.1 --scale-range 0.6 1.3 --boundary-width 2 --min-instance-size 12 \
	--instance-brightness 10 --seed 7 --core-fraction 0.35
NUCLEI_TRAIN := $(NUCLEI_RECIPE) --out runs/capped --epochs 120 --patience 25 --lr 3e-3
NUCLEI_FINETUNE := $(NUCLEI_RECIPE) --out runs/ft --epochs 70 --patience 20 --lr 1e-3 \
	--init-weights runs/capped/nuclei.keras
BRAIN_TRAIN := --data data/mni152-tissue --val-prefix val_ --name brain-tissue --out assets/brain-tissue \
	--description "Brain MRI (MNI152 T1) grey and white matter, semantic segmentation" \
	--class-names background,grey_matter,white_matter --input-size 192 --depth 4 --base-filters 8 \
	--batch-size 8 --samples-per-epoch 128 --epochs 25 --patience 8 --lr 3e-3 --scale-range 0.8 1.25 --seed 7
SHAPES_TRAIN := --data data/shapes --name shapes --out assets/shapes --channels 3 \
	--description "Synthetic RGB shapes (disc, square, triangle), semantic segmentation" \
	--class-names background,disc,square,triangle --input-size 128 --depth 3 --base-filters 16 \
	--batch-size 16 --samples-per-epoch 256 --epochs 60 --patience 15 --lr 3e-3 --seed 7

models: $(STAMP)
	$(PY) -m unet.datasets fetch bbbc007
	$(PY) -m unet.datasets fetch mni152-tissue
	$(PY) -m unet.datasets fetch shapes
	$(PY) -m unet.datasets fetch nuclei-sim
	$(PY) -m unet.train $(NUCLEI_TRAIN) --quiet
	$(PY) -m unet.train $(NUCLEI_FINETUNE) --quiet
	$(PY) -m unet.tune runs/ft/nuclei.keras --candidates 0,3,5 --interior-thresholds 0.45,0.6,0.75,0.85,0.9,0.95
	cp runs/ft/nuclei.keras runs/ft/nuclei.json runs/ft/history.csv \
		runs/ft/curves.png runs/ft/evaluation.json assets/nuclei/
	$(PY) -m unet.train $(BRAIN_TRAIN) --quiet
	$(PY) -m unet.train $(SHAPES_TRAIN) --quiet
	$(PY) export/to_tflite.py
	$(PY) -m bench.generalisation
	$(PY) -m export.model_card assets/nuclei
	$(PY) -m unet.datasets examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache web/node_modules
