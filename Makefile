# moat - the short commands. The real build is CMake + CTest (CMakeLists.txt).
#   make deps   install missing Debian packages (apt-get, as root or via sudo)
#   make        build into build/
#   make test   deps, then every test: the normal build and the ASan+UBSan build
#   make size   code size of the core for Cortex-M4 and ESP8266 (lx106)
#   make fuzz   build the libFuzzer harnesses and run each for FUZZ_SECONDS
#   make demo   the main job on this machine
#   make bench  benchmarks; rewrites docs/BENCHMARKS.md

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CTEST_FLAGS ?= --output-on-failure -j$(JOBS)

.PHONY: all deps build test test-fast unit size fuzz demo bench clean

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

$(BUILD_ASAN)/CMakeCache.txt:
	CC=clang cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DMOAT_SANITIZE=ON

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# The README's test command.
test: deps
	$(MAKE) build
	cd $(BUILD) && ctest $(CTEST_FLAGS)
	$(MAKE) $(BUILD_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_ASAN) -j$(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest $(CTEST_FLAGS)
	@echo "make test: all tests passed in $(BUILD) and $(BUILD_ASAN) (ASan+UBSan)"

# Unit tests only, normal build: the quick loop while editing.
unit: build
	cd $(BUILD) && ctest $(CTEST_FLAGS) -L unit

size: deps
	@sh scripts/size.sh
	@sh scripts/size-tls.sh

fuzz: deps
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOAT_FUZZ=ON
	cmake --build $(BUILD_FUZZ) -j$(JOBS)
	@sh scripts/fuzz.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

demo: deps build
	@sh scripts/demo.sh $(BUILD)

bench: deps build
	@sh scripts/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
