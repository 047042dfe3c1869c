// The merchant-site script, assets/earnd.js, embedded in the binary so that earnd serves it
// with no file next to it.

#include "handlers.h"

// EARND_JS_PATH is set by CMake; .incbin copies the file's bytes at assembly time.
asm(".section .rodata\n"
    ".global earnd_js_begin\n"
    "earnd_js_begin:\n"
    ".incbin \"" EARND_JS_PATH "\"\n"
    ".global earnd_js_end\n"
    "earnd_js_end:\n"
    ".previous\n");

extern "C" const char earnd_js_begin[];
extern "C" const char earnd_js_end[];

namespace earnd::http {

std::string_view earnd_js() noexcept {
  return {earnd_js_begin, static_cast<std::size_t>(earnd_js_end - earnd_js_begin)};
}

}  // namespace earnd::http
