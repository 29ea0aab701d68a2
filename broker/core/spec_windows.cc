#include "broker/core/spec_windows.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace orq {

std::shared_ptr<const TaskSpec> SpecWindows::Look(TaskId id) {
  const uint32_t number = id.index / kSpecWindow;
  const uint32_t at = id.index % kSpecWindow;
  for (size_t i = recent_.size(); i-- > 0;) {
    if (recent_[i].job != id.job || recent_[i].number != number) continue;
    if (i + 1 != recent_.size())  // the newest now
      std::rotate(recent_.begin() + i, recent_.begin() + i + 1, recent_.end());
    const auto& specs = recent_.back().specs;
    if (at >= specs->size()) break;
    return {specs, &(*specs)[at]};  // shares the window's ownership
  }
  if (auto it = away_.find({id.job, number}); it != away_.end()) {
    if (auto alive = it->second.lock()) {  // held by a running task: no second copy
      away_.erase(it);
      Keep({id.job, number, alive});
      if (at < alive->size()) return {alive, &(*alive)[at]};
    }
  }
  auto specs = store_.Specs(id.job, number);
  if (!specs || at >= specs->size())
    throw std::runtime_error("the broker's store has no spec for task " + FormatTaskId(id) +
                             " (is its journal damaged?)");
  Put(id.job, number, std::move(*specs));
  const auto& kept = recent_.back().specs;
  return {kept, &(*kept)[at]};
}

const TaskSpec& SpecWindows::Peek(TaskId id) {
  const uint32_t number = id.index / kSpecWindow;
  const uint32_t at = id.index % kSpecWindow;
  if (!recent_.empty()) {  // most often the newest window
    const Window& newest = recent_.back();
    if (newest.job == id.job && newest.number == number && at < newest.specs->size())
      return (*newest.specs)[at];
  }
  return *Look(id);  // (it is kept: the newest window now)
}

void SpecWindows::Put(uint64_t job, uint32_t window, std::vector<TaskSpec> specs) {
  Keep({job, window, std::make_shared<const std::vector<TaskSpec>>(std::move(specs))});
}

void SpecWindows::Keep(Window window) {
  if (recent_.size() >= kKept) {
    Window& oldest = recent_.front();
    if (oldest.specs.use_count() > 1) {       // a running task holds one of its specs
      if (away_.size() >= 2 * away_limit_) {  // the expired go now and then
        std::erase_if(away_, [](const auto& entry) { return entry.second.expired(); });
        away_limit_ = std::max(kKept, away_.size());
      }
      away_[{oldest.job, oldest.number}] = oldest.specs;
    }
    recent_.erase(recent_.begin());
  }
  recent_.push_back(std::move(window));
}

void SpecWindows::Forget(uint64_t job) {
  std::erase_if(recent_, [job](const Window& w) { return w.job == job; });
  std::erase_if(away_, [job](const auto& entry) { return entry.first.first == job; });
}

}  // namespace orq
