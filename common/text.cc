#include "common/text.h"

#include <cstdint>
#include <cstdio>

namespace orq {
namespace {

// The length of the valid UTF-8 sequence at text[i] and its code point; 0 when it is not one.
size_t Utf8At(std::string_view text, size_t i, uint32_t& code) {
  const auto c = static_cast<unsigned char>(text[i]);
  size_t n = 0;
  if (c < 0x80) {
    code = c;
    return 1;
  }
  if ((c & 0xe0) == 0xc0) {
    n = 2, code = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3, code = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4, code = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto d = static_cast<unsigned char>(text[i + k]);
    if ((d & 0xc0) != 0x80) return 0;
    code = (code << 6) | (d & 0x3f);
  }
  constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kSmallest[n] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
    return 0;  // overlong, out of range, or a surrogate
  return n;
}

bool IsControl(uint32_t code) { return code < 0x20 || (code >= 0x7f && code < 0xa0); }

}  // namespace

bool IsPrintableUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t code = 0;
    const size_t n = Utf8At(text, i, code);
    if (n == 0 || IsControl(code)) return false;
    i += n;
  }
  return true;
}

std::string EscapeControls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t code = 0;
    size_t n = Utf8At(text, i, code);
    if (n > 0 && (!IsControl(code) || code == '\t' || code == '\n')) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    n = n == 0 ? 1 : n;  // an invalid byte alone, or a whole C1 sequence
    for (size_t k = 0; k < n; ++k) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned char>(text[i + k]));
      out += hex;
    }
    i += n;
  }
  return out;
}

}  // namespace orq
