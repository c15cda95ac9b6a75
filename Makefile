# rota: `make` builds, `make demo` shows it working, `make test` is the one gate.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROTA_WERROR=ON
SOURCES = $(shell git ls-files 'src/*.cc' 'src/*.h' 'clients/*.h' 'clients/*.cc' 'examples/*.cc' 2>/dev/null)

.PHONY: all deps build demo test unit integration clients browser format format-check bench clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/Makefile: CMakeLists.txt | deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

# scripts/build-web builds the dashboard (web/dist) when Node.js is there; cmake embeds it.
build: deps $(BUILD)/Makefile
	@scripts/build-web
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

demo: build
	@scripts/demo

format:
	@clang-format -i $(SOURCES)

format-check: deps
	@clang-format --dry-run -Werror $(SOURCES) && echo "format: ok"

unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

integration: build
	@ROTA_BIN=$(CURDIR)/$(BUILD)/rota /usr/bin/python3 -m pytest -q tests/integration

# The worker helpers of clients/: Python and Node (the C++ one is in `unit`).
clients: build
	@/usr/bin/python3 -m pytest -q clients/python
	@node --test clients/node/test/

# The dashboard in Chromium (playwright-core), against a real daemon; screenshots in $(BUILD)/screenshots.
browser: build
	@scripts/install-deps browser
	@ROTA_BIN=$(CURDIR)/$(BUILD)/rota SCREENSHOTS=$(CURDIR)/$(BUILD)/screenshots tests/browser/run

test: format-check unit integration clients browser

bench: build
	@scripts/install-deps bench
	@bench/run

clean:
	@rm -rf $(BUILD)
