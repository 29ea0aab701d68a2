#include "broker/allocator.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/overloaded.h"

namespace orq {

Allocator::Allocator(std::unique_ptr<AllocBackend> backend, SqliteJournal* journal)
    : backend_(std::move(backend)),
      journal_(journal),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      thread_([this] { Run(); }) {}

Allocator::~Allocator() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Allocator::Run() {
  for (;;) {
    Call call;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [&] { return stopping_ || !calls_.empty(); });
      if (stopping_) return;
      call = std::move(calls_.front());
      calls_.pop_front();
    }
    Answer answer{call.action, Expected<void>()};
    switch (call.action.kind) {
      case AllocAction::Kind::kSubmit:
        answer.result = backend_->Submit(call.queue);
        break;
      case AllocAction::Kind::kPoll:
        answer.result = backend_->Jobs(call.queue);
        break;
      case AllocAction::Kind::kCancel:
        answer.result = backend_->Cancel(call.queue, call.action.id);
        break;
    }
    {
      std::lock_guard lock(mutex_);
      answers_.push_back(std::move(answer));
    }
    const uint64_t one = 1;
    [[maybe_unused]] auto written = ::write(wake_fd_, &one, sizeof one);
  }
}

void Allocator::Post(std::vector<AllocAction> actions) {
  if (actions.empty()) return;
  const std::vector<AllocQueueInfo> all = policy_.All();
  {
    std::lock_guard lock(mutex_);
    for (AllocAction& action : actions) {
      AllocQueueInfo queue;
      for (const AllocQueueInfo& q : all) {
        if (q.spec.name == action.queue) queue = q;
      }
      if (action.kind == AllocAction::Kind::kSubmit)
        Log("allocation queue " + action.queue + ": submitting an allocation of " +
            std::to_string(queue.spec.workers_per_alloc) + " workers");
      calls_.push_back({std::move(action), std::move(queue)});
    }
  }
  ready_.notify_one();
}

Message Allocator::Handle(const AllocRequest& request) {
  auto reply = [&](Expected<std::vector<AllocQueueInfo>> queues) -> Message {
    Keep();
    if (!queues) return ErrorReply{queues.error().code, queues.error().sentence};
    return AllocReply{std::move(*queues)};
  };
  auto one = [&](Expected<AllocQueueInfo> queue) -> Message {
    if (!queue) return reply(queue.error());
    return reply(std::vector<AllocQueueInfo>{std::move(*queue)});
  };
  switch (request.op) {
    case AllocRequest::Op::kAdd: {
      auto added = policy_.Add(request.spec, request.access_file);
      if (added)
        Log("allocation queue " + request.spec.name + " added: up to " +
            std::to_string(request.spec.max_workers) + " workers through " + request.spec.backend);
      return one(std::move(added));
    }
    case AllocRequest::Op::kList:
      return reply(policy_.List(request.name));
    case AllocRequest::Op::kPause:
      return one(policy_.Pause(request.name));
    case AllocRequest::Op::kResume:
      return one(policy_.Resume(request.name));
    case AllocRequest::Op::kRemove: {
      auto before = policy_.List(request.name);
      auto cancels = policy_.Remove(request.name, request.keep);
      if (!cancels) return reply(cancels.error());
      Log("allocation queue " + request.name + " removed; cancelling " +
          std::to_string(cancels->size()) + " allocations");
      // The cancels need the queue as it was: posted with it, since it is gone from the policy.
      {
        std::lock_guard lock(mutex_);
        for (AllocAction& action : *cancels) calls_.push_back({std::move(action), before->front()});
      }
      ready_.notify_one();
      return reply(std::move(before));
    }
  }
  return ErrorReply{ErrorCode::kBadRequest, "unknown alloc operation"};
}

void Allocator::Step(BrokerCore& core, SteadyTime now, double wall, bool plan_now) {
  // The wake-up first, then the answers: one that comes in between wakes the loop again.
  uint64_t count = 0;
  [[maybe_unused]] auto read = ::read(wake_fd_, &count, sizeof count);
  std::deque<Answer> answers;
  {
    std::lock_guard lock(mutex_);
    answers.swap(answers_);
  }
  const bool answered = !answers.empty() || plan_now;
  for (Answer& answer : answers) {
    const std::string& queue = answer.action.queue;
    std::visit(
        Overloaded{
            [&](Expected<std::string>& id) {
              if (id)
                Log("allocation queue " + queue + ": submitted allocation " + *id);
              else
                Log("allocation queue " + queue + ": the submit failed: " + id.error().sentence);
              if (!policy_.Submitted(queue, id, now, wall) && id) {
                Log("allocation queue " + queue + " was removed meanwhile: cancelling " + *id);
                AllocQueueInfo gone;
                gone.spec.name = queue;
                std::lock_guard lock(mutex_);
                calls_.push_back({{AllocAction::Kind::kCancel, queue, *id}, std::move(gone)});
                ready_.notify_one();
              }
            },
            [&](Expected<std::vector<BackendJob>>& jobs) {
              if (!jobs) return policy_.PollFailed(queue, jobs.error().sentence, now);
              for (const std::string& gone : policy_.Observed(queue, *jobs, now, wall)) {
                Log("allocation " + gone + " ended");
                core.AllocationGone(gone, "its allocation " + gone + " ended");
              }
            },
            [&](Expected<void>& cancelled) {
              if (!cancelled.ok())
                Log("allocation " + AllocationName(queue, answer.action.id) +
                    " could not be cancelled: " + cancelled.error().sentence);
            },
        },
        answer.result);
  }
  if (policy_.empty() || (!answered && now < next_plan_)) return Keep();
  next_plan_ = now + kAllocStep;
  std::map<std::string, std::array<uint64_t, kTaskClassCount>> demand;
  for (const AllocQueueSpec* spec : policy_.Specs())
    demand[spec->name] = core.AllocDemand(*spec, kAllocDemandBudget, now);
  std::map<std::string, AllocWorkerCount> workers;
  for (const auto& [name, w] : core.AllocationWorkers()) workers[name] = {w.count, w.slots};
  Post(policy_.Plan(demand, workers, now, wall));
  Keep();
}

void Allocator::Keep() {
  for (const std::string& name : policy_.TakeRemoved()) {
    if (journal_) journal_->RecordAllocQueue(name, std::nullopt);
  }
  for (AllocQueueInfo& queue : policy_.TakeChanged()) {
    if (journal_) journal_->RecordAllocQueue(queue.spec.name, std::move(queue));
  }
}

}  // namespace orq
