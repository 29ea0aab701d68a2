#include "broker/core/queues.h"

namespace orq {

ReadyQueues::Queue* ReadyQueues::Next(const Worker& w, size_t c) {
  Queue* best = nullptr;
  if (w.queues.empty()) {
    for (auto& [name, queues] : queues_) {
      Queue& q = queues[c];
      if (!q.empty() && (!best || best->top() < q.top())) best = &q;
    }
    return best;
  }
  for (const std::string& name : w.queues) {
    auto it = queues_.find(name == kDefaultQueue ? "" : name);
    if (it == queues_.end()) continue;
    Queue& q = it->second[c];
    if (!q.empty() && (!best || best->top() < q.top())) best = &q;
  }
  return best;
}

const ReadyQueues::Queue* ReadyQueues::Find(const std::string& queue, size_t c) const {
  auto it = queues_.find(queue);
  return it == queues_.end() ? nullptr : &it->second[c];
}

std::optional<TaskId> DelayedTasks::PopDue(SteadyTime now) {
  if (heap_.empty() || heap_.top().due > now) return std::nullopt;
  const TaskId id = heap_.top().id;
  heap_.pop();
  return id;
}

std::optional<SteadyTime> DelayedTasks::NextDue() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.top().due;
}

std::optional<SteadyTime> DelayedTasks::DueOf(TaskId id) const {
  std::optional<SteadyTime> due;
  for (const Entry& e : heap_.entries()) {
    if (e.id == id && (!due || e.due < *due)) due = e.due;
  }
  return due;
}

}  // namespace orq
