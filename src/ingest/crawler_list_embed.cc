// Links the crawler-user-agents list into the binary, so that the server needs no data file at
// run time. The assembler copies the file named by EARND_CRAWLER_LIST_PATH into read-only data,
// followed by its length. The build must list the JSON as a dependency of this file (in CMake,
// the OBJECT_DEPENDS source property): the compiler's dependency scan does not see an .incbin.

#include <cstdint>

#include "earnd/ingest/bot_classifier.h"

#ifndef EARND_CRAWLER_LIST_PATH
#error "EARND_CRAWLER_LIST_PATH must name crawler-user-agents.json, as a string literal"
#endif

// The size is computed by the assembler and stored beside the bytes, so that C++ never subtracts
// pointers to two different objects. The labels are global so that the references below resolve
// whatever the compiler does with top-level asm, and hidden so that they stay in this binary. A
// zero byte follows the text for tools that expect a C string.
asm(".pushsection .rodata.earnd_crawler_list, \"a\", @progbits\n"
    ".balign 16\n"
    ".globl earnd_crawler_list_data\n"
    ".hidden earnd_crawler_list_data\n"
    "earnd_crawler_list_data:\n"
    ".incbin \"" EARND_CRAWLER_LIST_PATH
    "\"\n"
    "earnd_crawler_list_data_end:\n"
    ".byte 0\n"
    ".balign 8\n"
    ".globl earnd_crawler_list_size\n"
    ".hidden earnd_crawler_list_size\n"
    "earnd_crawler_list_size:\n"
    ".quad earnd_crawler_list_data_end - earnd_crawler_list_data\n"
    ".popsection\n");

extern "C" {
extern const char earnd_crawler_list_data[];
extern const std::uint64_t earnd_crawler_list_size;
}

namespace earnd::ingest {

std::string_view embedded_crawler_list() noexcept {
  return std::string_view(earnd_crawler_list_data, earnd_crawler_list_size);
}

}  // namespace earnd::ingest
