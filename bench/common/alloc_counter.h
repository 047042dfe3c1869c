#pragma once

// Counts heap allocations made by the calling thread, for benchmarks that report allocations
// per operation. Linking alloc_counter.cc replaces the global operator new of the binary.

#include <cstdint>

namespace earnd::bench {

// Allocations made by this thread since it started.
std::uint64_t thread_allocations() noexcept;

}  // namespace earnd::bench
