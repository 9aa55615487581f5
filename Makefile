# The two entry points of the README. Each creates .venv from the pins when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast browser datasets clean-venv

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP) datasets
	$(VENV)/bin/tfmc demo --out demo_out $(DEMO_ARGS)

test: $(STAMP) browser datasets
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests $(TEST_ARGS)

# The unit loop: everything but the end-to-end files (tests/conftest.py END_TO_END) and the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow" tests $(TEST_ARGS)

# The report test opens report.html in a real headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium; the browser test of the report will be skipped"

# Fashion-MNIST's four IDX files (Debian's package, 30 MB) for tfmc.data.fashion_mnist.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
datasets:
	@test -f $(FASHION_MNIST) || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: could not install dataset-fashion-mnist; the Fashion-MNIST tests will be skipped"

clean-venv:
	rm -rf $(VENV)
