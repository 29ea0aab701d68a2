// A job as it is received: its specs checked one by one as they come (in parts, for a large job)
// and kept encoded in windows of kSpecWindow (broker/core/store.h), with only what the core needs
// of each task to queue it. So a job of millions never has its specs decoded all at once: a part is
// decoded, checked and encoded again, and its decoded specs go. Pure.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/core/store.h"
#include "common/task_spec.h"

namespace orq {

class JobBuilder {
 public:
  JobBuilder() = default;
  explicit JobBuilder(std::vector<TaskSpec> specs) { Add(std::move(specs)); }

  // Appends tasks after those added before. Each is checked (ValidateSpec); after the first that
  // is refused, the rest are only counted.
  void Add(std::vector<TaskSpec> specs);

  // What the core queues a task by, when it has no needs and no delay.
  struct Queueing {
    int32_t priority = 0;
    TaskClass task_class = TaskClass::kAsync;
  };
  // A task that needs more: a delay, or needs (dependencies, a queue, limits, locks,
  // resources). Few tasks have any, so they are listed apart.
  struct Special {
    uint32_t index = 0;
    double delay = 0;
    std::shared_ptr<const Needs> needs;  // null: none
  };

  uint32_t size() const { return size_; }
  // The first task refused, as "task N: ..."; nullopt while every task is valid.
  const Expected<void>& problem() const { return problem_; }
  const std::vector<Queueing>& queueing() const { return queueing_; }
  const std::vector<Special>& specials() const { return specials_; }
  // The tasks with needs, for the job-wide checks (CheckDependencies).
  std::vector<TaskNeeds> needs() const;
  // Tasks of each TaskClass, to size the ready queues once.
  const std::array<size_t, kTaskClassCount>& per_class() const { return per_class_; }
  // Tasks of each kind (TaskBody's index).
  const std::vector<uint32_t>& per_kind() const { return per_kind_; }
  // The first task, for the job's label; null for a job without tasks.
  const TaskSpec* first() const;

  // The encoded windows, every task in one (call once, after the last Add).
  std::vector<std::string> TakeWindows();
  // The first window's specs, decoded (they are at hand: spares reading them back).
  std::vector<TaskSpec> TakeFirstWindow() { return std::move(first_window_); }

 private:
  void Seal();  // encodes the open window

  uint32_t size_ = 0;
  Expected<void> problem_;
  std::vector<Queueing> queueing_;
  std::vector<Special> specials_;
  std::array<size_t, kTaskClassCount> per_class_{};
  std::vector<uint32_t> per_kind_ = std::vector<uint32_t>(kTaskKindCount);
  std::vector<std::string> windows_;    // full windows, encoded
  std::vector<TaskSpec> open_;          // the last window, until it is full
  std::vector<TaskSpec> first_window_;  // window 0, decoded
};

}  // namespace orq
