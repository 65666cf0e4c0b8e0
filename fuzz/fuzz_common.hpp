// Shared by the coachwhip fuzz targets: the invariant check and a small deterministic PRNG.
//
// FUZZ_CHECK(cond) states a property of the code under test. On violation it prints which one
// (libFuzzer's own report only shows the stack) and aborts; libFuzzer catches SIGABRT, prints
// the stack trace and saves the input as crash-<sha1>. It stays active in every build mode:
// it is the oracle, not a debugging aid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace coachwhip_fuzz {

[[noreturn]] inline void invariant_failed(const char* what, const char* file, int line) {
    std::fprintf(stderr, "\n==fuzz== invariant violated: %s\n==fuzz==   at %s:%d\n", what, file,
                 line);
    std::abort();
}

// splitmix64: every choice a target makes beyond the raw bytes (piece sizes, app behaviour) is
// drawn from this, seeded by input bytes, so each input replays exactly.
struct rng {
    uint64_t state;
    explicit rng(uint64_t seed) : state(seed) {}
    uint64_t next() noexcept {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform enough in [lo, hi] for picking sizes; hi >= lo.
    size_t between(size_t lo, size_t hi) noexcept { return lo + next() % (hi - lo + 1); }
    bool one_in(unsigned n) noexcept { return next() % n == 0; }
};

}  // namespace coachwhip_fuzz

#define FUZZ_CHECK(cond)                                                            \
    do {                                                                            \
        if (!(cond)) ::coachwhip_fuzz::invariant_failed(#cond, __FILE__, __LINE__); \
    } while (0)
