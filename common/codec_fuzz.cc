// libFuzzer target: the codec and the task-line parser must turn any bytes into a message or an
// error, never a crash, a hang or an unbounded allocation. Built by scripts/fuzz.sh with clang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/codec.h"
#include "common/task_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // First byte: which command frame; the rest: the body.
  const char command = bytes[0];
  auto decoded = orq::Decode(orq::kProtocolVersion, std::string_view(&command, 1), bytes.substr(1));
  if (decoded) {
    // Whatever decodes must encode and decode to the same bytes.
    orq::EncodedMessage again = orq::Encode(*decoded);
    auto twice = orq::Decode(orq::kProtocolVersion, std::string_view(&command, 1), again.body);
    if (!twice || orq::Encode(*twice).body != again.body) __builtin_trap();
  }
  (void)orq::DecodeSpecs(bytes);
  (void)orq::DecodeOutcome(bytes);
  (void)orq::DecodeFirstSpec(bytes);
  (void)orq::ParseTaskJson(bytes, "fuzz:1");
  return 0;
}
