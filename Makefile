# The two commands a newcomer needs (see README.md):
#   make demo   set up, then run the demo benchmark on built-in data and built-in models
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint setup browser clean llama-wheel

# llama.cpp is built from source by llama-cpp-python. Its default is -march=native, which on a CPU
# that reports AMX compiles tile kernels that trap under some hypervisors (SIGILL), and pip's wheel
# cache would hand that build to any later install. So the wheel is built here, portable
# (x86-64-v3: AVX2/FMA/F16C, no AVX-512, no AMX), without pip's cache, into a folder keyed by the
# version and the flags, and installed from there only (--only-binary).
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF
LLAMA_WHEEL_KEY := $(shell printf '%s %s' '$(LLAMA_CPP_VERSION)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
LLAMA_WHEEL_DIR ?= $(HOME)/.cache/socialens/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-portable-$(LLAMA_WHEEL_KEY)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

llama-wheel: | $(BIN)/python
	@ls $(LLAMA_WHEEL_DIR)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 \
		|| (echo "building a portable llama.cpp ($(LLAMA_CPP_VERSION)); about 6.5 minutes, once per machine" \
			&& CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-cache-dir --no-deps \
				--no-binary llama-cpp-python "llama-cpp-python==$(LLAMA_CPP_VERSION)" -w $(LLAMA_WHEEL_DIR))

$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(MAKE) --no-print-directory llama-wheel
	$(BIN)/pip install --quiet --only-binary llama-cpp-python --find-links $(LLAMA_WHEEL_DIR) \
		"llama-cpp-python==$(LLAMA_CPP_VERSION)" -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# The HTML-report test opens the report in a real headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: the browser test will be skipped"

demo: setup
	$(BIN)/socialens bench configs/demo.yaml

test: setup browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
