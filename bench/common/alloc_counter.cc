#include "alloc_counter.h"

#include <cstdlib>
#include <new>

namespace {

thread_local std::uint64_t t_allocations = 0;

void* counted_alloc(std::size_t n) {
  ++t_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) {
    return p;
  }
  throw std::bad_alloc();
}

}  // namespace

namespace earnd::bench {

std::uint64_t thread_allocations() noexcept { return t_allocations; }

}  // namespace earnd::bench

void* operator new(std::size_t n) { return counted_alloc(n); }

void* operator new[](std::size_t n) { return counted_alloc(n); }

void operator delete(void* p) noexcept { std::free(p); }

void operator delete[](void* p) noexcept { std::free(p); }

void operator delete(void* p, std::size_t) noexcept { std::free(p); }

void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
