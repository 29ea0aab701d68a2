#include "broker/core/store.h"

#include <algorithm>

namespace orq {

std::vector<std::string> EncodeWindows(const std::vector<TaskSpec>& specs) {
  std::vector<std::string> windows;
  for (size_t first = 0; first < specs.size(); first += kSpecWindow) {
    const size_t count = std::min<size_t>(kSpecWindow, specs.size() - first);
    windows.push_back(EncodeSpecs(std::span<const TaskSpec>(specs).subspan(first, count)));
  }
  return windows;
}

}  // namespace orq
