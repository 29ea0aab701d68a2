#include "broker/core/job_builder.h"

#include <utility>

#include "common/codec.h"

namespace orq {

void JobBuilder::Add(std::vector<TaskSpec> specs) {
  if (!problem_.ok()) {
    size_ += static_cast<uint32_t>(specs.size());
    return;
  }
  queueing_.reserve(queueing_.size() + specs.size());
  for (TaskSpec& spec : specs) {
    if (auto error = ValidateSpec(spec); !error.ok()) {
      problem_ = Fault("task " + std::to_string(size_) + ": " + error.error().sentence);
      size_ += static_cast<uint32_t>(&specs.back() - &spec + 1);
      // Nothing of a refused job is kept.
      queueing_ = {}, specials_ = {}, windows_ = {}, open_ = {}, first_window_ = {};
      return;
    }
    const TaskClass task_class = ClassOf(spec);
    ++per_class_[static_cast<size_t>(task_class)];
    ++per_kind_[spec.body.index()];
    queueing_.push_back({spec.priority, task_class});
    if (spec.needs || spec.delay > 0) specials_.push_back({size_, spec.delay, spec.needs});
    ++size_;
    open_.push_back(std::move(spec));
    if (open_.size() == kSpecWindow) Seal();
  }
}

void JobBuilder::Seal() {
  if (open_.empty()) return;
  windows_.push_back(EncodeSpecs(open_));
  if (windows_.size() == 1) {
    first_window_ = std::move(open_);
    open_ = {};
  } else {
    open_.clear();
  }
}

std::vector<TaskNeeds> JobBuilder::needs() const {
  std::vector<TaskNeeds> needs;
  for (const Special& s : specials_) {
    if (s.needs) needs.push_back({s.index, s.needs});
  }
  return needs;
}

const TaskSpec* JobBuilder::first() const {
  if (!first_window_.empty()) return &first_window_.front();
  if (!open_.empty() && windows_.empty()) return &open_.front();
  return nullptr;
}

std::vector<std::string> JobBuilder::TakeWindows() {
  Seal();
  return std::move(windows_);
}

}  // namespace orq
