# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# PyTorch goes in first: the CPU build from local files here (a plain `torch` pulls a multi-GB
# CUDA build). On a GPU machine: make TORCH=torch run
TORCH ?= torch==2.13.0

.PHONY: setup run test bench prepare-baseline prepare-bilingual train-tiny train-koen train-baseline train-pretrain leaderboard info clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '$(TORCH)'
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(PY) evaluate.py

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/bm25_throughput.py
	$(PY) benchmarks/sparse_search.py
	$(PY) benchmarks/encoding_speed.py
	$(PY) benchmarks/evaluation_speed.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/release_report.py

# the embedded GIMP splits (the default training and evaluation data): rebuild them from Debian's packages and check
# that the rebuild is byte-identical to what ships (apt-get download needs the Debian mirror)
prepare-baseline: $(VENV)/.installed
	$(PY) -m harness.prepare.gimp --out data/prepared/gimp
	$(PY) -m harness.prepare.check_embedded data/prepared/gimp

# Korean-English tasks from the Debian FAQ and the Firefox ESR / Thunderbird strings: the pinned
# .debs are apt-get downloaded into .cache/debs once; a re-run with the same packages is a no-op
prepare-bilingual: $(VENV)/.installed
	$(PY) -m harness.prepare bilingual --out data/prepared/bilingual --debs .cache/debs

# training: every saved checkpoint is evaluated and lands on the leaderboard
train-tiny: $(VENV)/.installed
	$(PY) evaluate.py --model bm25-ko --model idf-only-en --model splade-en-tiny --dataset gimp-en
	$(PY) train.py --config configs/tiny_cpu.yaml
	$(PY) evaluate.py leaderboard --dataset gimp-en

# the Korean-English SPLADE-doc on 2 CPU cores (< 90 min): the bilingual pairs, Kiwi BM25 and the
# untrained koen-e5-small-aligned base (built on first use) on the leaderboard, training, the leaderboard
KOEN_TASKS := --dataset gimp-ko --dataset gimp-ko-en --dataset gimp-en
train-koen: prepare-bilingual
	$(PY) evaluate.py --model bm25-ko --model koen-e5-small-aligned $(KOEN_TASKS) --top-k 100
	$(PY) train.py --config configs/koen_small_cpu.yaml
	for d in gimp-ko gimp-ko-en gimp-en; do $(PY) evaluate.py leaderboard --dataset $$d --limit 8; done

train-baseline: $(VENV)/.installed
	$(PY) train.py --config configs/baseline_dgx.yaml

train-pretrain: $(VENV)/.installed
	$(PY) train.py --config configs/pretrain_korean.yaml

leaderboard: $(VENV)/.installed
	$(PY) evaluate.py leaderboard

info: $(VENV)/.installed
	@$(PY) -c "import platform, torch; print('python', platform.python_version(), '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
	$(PY) evaluate.py list

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache outputs
