// Text as bytes: whether it is UTF-8, and ids shown to a person. Ids are opaque bytes (SYSTEM.md:
// UTF-8, but a file read offline may hold anything, and ingest keeps a NUL or an ESC in an id):
// printed raw, an ESC sequence in an id drives the operator's terminal, a NUL cuts it short in a
// printf and a newline breaks a line apart.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace gsau {

// The length of the well-formed UTF-8 sequence starting at s[i] (1 to 4; RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or 0 when the bytes there are not one. i < s.size().
size_t Utf8SequenceLength(std::string_view s, size_t i);

// True when `s` is well-formed UTF-8, which JSON text must be: a Latin-1 id ("Jos\xe9") makes the
// event invalid JSON.
bool IsValidUtf8(std::string_view s);

// `s` for a terminal or a log line, on one line, two different ids never shown alike: well-formed
// UTF-8 passes, except what would act, or show nothing, rather than show. A backslash is doubled;
// \n, \r and \t are written so; other control characters (below 0x20, DEL) and bytes that are not
// UTF-8 are \xNN; C1 controls (U+0080-U+009F) and the invisible format characters (soft hyphen,
// zero-width spaces and joiners, direction marks, overrides and isolates, line and paragraph
// separators, word joiner, BOM, interlinear annotation) are \u{NNNN}. (Letters that merely look
// alike, Latin a and Cyrillic а, stay as they are.)
std::string DisplayText(std::string_view s);

}  // namespace gsau
