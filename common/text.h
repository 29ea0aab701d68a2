// Text from peers, checked before it is kept and made safe before it is shown.
#pragma once

#include <string>
#include <string_view>

namespace orq {

// Valid UTF-8 with no control character (C0, DEL, C1): safe in JSON and on a terminal.
bool IsPrintableUtf8(std::string_view text);

// `text` with every control character (C0 but tab and newline, DEL, C1) and every byte that is
// not valid UTF-8 written as \xNN: a sentence that came from elsewhere cannot move a terminal's
// cursor, change its title or hide what came before it.
std::string EscapeControls(std::string_view text);

}  // namespace orq
