# lowbit: `make demo` runs the main job on a built-in default, `make test` runs every CPU test.
# Both install what they need first (scripts/setup.sh, Debian packages) and build in Release.

BUILD       ?= build
JOBS        ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all setup build test demo asan format clean

all: build

setup:
	@./scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Tests run one at a time: each already uses every core through OpenMP.
test: build
	@if [ -x scripts/fetch_test_data.sh ]; then ./scripts/fetch_test_data.sh; fi
	@cd $(BUILD) && ctest --output-on-failure -LE cuda
	@$(BUILD)/lowbit_tests --gtest_filter='Golden.*' | grep '^golden:'

demo: build
	@$(BUILD)/lowbit demo

# Every CPU test under AddressSanitizer and UndefinedBehaviorSanitizer.
asan: setup
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOWBIT_SANITIZE=ON -DLOWBIT_CUDA=OFF >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -LE cuda

format:
	@git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD) build-asan
