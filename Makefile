# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap everything
# they need (system GL packages, .venv, torch, the project) and are quick when done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bootstrapped
# Offscreen OpenGL for pyrender: EGL (Mesa, also software) first, OSMesa as the fallback.
APT_PACKAGES := libegl1 libgl1 libegl-mesa0 libgles2 libosmesa6 libglu1-mesa
# Only for the tests: a real browser for the viewer page, real speech for audio-to-motion,
# a real Janus SFU and an nginx RTMP/HLS server for the scale-out tests.
TEST_APT_PACKAGES := chromium espeak-ng janus nginx libnginx-mod-rtmp
# TORCH=cpu|cuda|skip; auto: the CUDA build when nvidia-smi sees a GPU, else the CPU build.
TORCH ?= auto
TORCH_CPU_VERSION ?= 2.13.0
DEMO_OUT ?= out/demo.mp4
DEMO_HOST ?= 127.0.0.1
DEMO_PORT ?= 8765

.PHONY: all bootstrap system-packages test-packages apt-install demo demo-video test lint typecheck unit bench clean

all: test

bootstrap: system-packages $(STAMP)

system-packages:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"

test-packages:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_APT_PACKAGES)"

apt-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@mode="$(TORCH)"; \
	if [ "$$mode" = auto ]; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then mode=cuda; else mode=cpu; fi; fi; \
	echo "torch: $$mode build"; \
	if [ "$$mode" = cpu ]; then $(BIN)/pip install -q "torch==$(TORCH_CPU_VERSION)"; \
	elif [ "$$mode" = cuda ]; then $(BIN)/pip install -q torch; fi
	# Pin whatever torch is now installed so no dependency can swap it for another build.
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	# ONNX Runtime to match: the GPU build next to a CUDA torch (also one installed by hand).
	$(BIN)/python -c "import torch; print('ort-gpu' if torch.version.cuda else 'ort-cpu')" > $(VENV)/ort-extra
	# One ONNX Runtime build only (onnxruntime-gpu next to a CUDA torch, else the CPU one):
	# the two wheels ship the same module, so the other one goes first (a venv that switched).
	@if [ "$$(cat $(VENV)/ort-extra)" = ort-gpu ]; then other=onnxruntime; else other=onnxruntime-gpu; fi; \
	if $(BIN)/pip show -q $$other >/dev/null 2>&1; then $(BIN)/pip uninstall -y -q $$other; fi
	$(BIN)/pip install -q -c $(VENV)/torch-constraint.txt -e ".[dev,lora,pipecat,$$(cat $(VENV)/ort-extra)]"
	# pyrender pins PyOpenGL 3.1.0; OSMesa needs >= 3.1.4 and NumPy 2 needs a current one.
	$(BIN)/pip install -q --no-deps "PyOpenGL==3.1.10"
	# The face detector's MTCNN weights ship in facenet-pytorch's wheel; only its data files
	# are read (model/face_detector.py). Its pins (torch < 2.3, torchvision, numpy < 2) are
	# for its own code, which the project never imports: installed without them.
	$(BIN)/pip install -q --no-deps "facenet-pytorch==2.6.0"
	touch $(STAMP)

# The live demo: server + looping producer with the trained demo model; prints the
# viewer URL (open it in a browser); Ctrl-C stops it.
demo: bootstrap
	$(BIN)/anchor demo --host $(DEMO_HOST) --port $(DEMO_PORT)

# The same model offline: the bundled motion clip rendered to an mp4.
demo-video: bootstrap
	@mkdir -p $(dir $(DEMO_OUT))
	$(BIN)/anchor generate clients/samples/wave_talkshow.npy --out $(DEMO_OUT)
	@echo "demo video written to $(DEMO_OUT)"

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: bootstrap
	$(BIN)/mypy

unit: bootstrap test-packages
	$(BIN)/pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) .cache out .pytest_cache .mypy_cache .ruff_cache
