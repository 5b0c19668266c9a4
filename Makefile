# Everything starts from nothing: the first target that needs the environment creates it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install main test unit notebooks book pages results test-times bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch by name first: 2.13.0 is the CPU build here; anything else pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## the main job: the 1%-label comparison on the default cohort (supervised baseline with
## augmentation, Mean Teacher, registration-only, joint method); prints the table. Run again, it
## reads the finished results back (and resumes an interrupted run) instead of overwriting them.
main: $(STAMP)
	$(VENV)/bin/segreg-lite run --preset quick --fraction 0.01 --out results/main

## every test: unit tests, the chapters under nbval in smoke mode, the book build
test: unit notebooks book

unit: $(STAMP)
	$(PY) -m pytest tests -q

notebooks: $(STAMP)
	SEGREG_SMOKE=1 $(PY) -m pytest --nbval-lax book -q -p no:cacheprovider

## build the book from the committed outputs, then check the HTML (tables render as tables, no raw
## MyST roles, no blank outputs: what -W cannot see)
book: $(STAMP)
	$(VENV)/bin/jupyter-book build -W --keep-going --all .
	$(PY) scripts/check_book.py

## lay the built book out in headless Chromium at 1280 px and 400 px and read it as GitHub shows
## the notebooks: overflow, echo outputs, raw roles, figures, unfolded solutions (the layout
## checks need Chromium, which `make install` cannot provide, so `test` leaves this target out)
pages: $(STAMP)
	$(PY) scripts/check_pages.py

## re-execute every chapter at full settings into book/ (outputs committed, run times recorded; the
## results chapter reads the sweep shipped in the package), write the README's generated blocks,
## then build and check the book
results: $(STAMP)
	$(PY) scripts/run_chapters.py
	$(PY) scripts/readme_results.py
	$(MAKE) book

## time make test part by part on this (idle) machine and write the README's line on it
test-times: $(STAMP)
	$(PY) scripts/time_tests.py
	$(PY) scripts/readme_results.py

bench: $(STAMP)
	$(PY) benchmarks/bench_cohort.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_round.py
	$(PY) benchmarks/bench_registration.py

clean:
	rm -rf _build .pytest_cache
