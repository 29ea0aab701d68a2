#include "broker/durability.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include "common/log.h"

namespace orq {
namespace {

using std::chrono::milliseconds;

// How often the journal's free space is looked at (a statvfs), and how little is "full": below
// it the broker refuses work before a commit fails; it accepts again once the reserve fits and
// twice this is free.
constexpr milliseconds kSpaceCheckInterval{200};
constexpr uint64_t kLowSpace = 1ull << 20;
// How long a journal without fsync gathers turns into one commit (see Commit).
constexpr milliseconds kStoreCommitInterval{20};

std::string Mebibytes(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", bytes / 1048576.0);
  return text;
}

}  // namespace

Durability::Durability(const std::string& path, bool sync) : path_(path), sync_(sync) {
  if (path.empty()) return;
  sqlite_ = SqliteJournal::Open(path, sync);
  space_ = std::make_unique<JournalSpace>(path);
  if (!space_->Reserve())
    Log("no room for the journal's reserve of " + Mebibytes(space_->reserve_bytes()) + " beside " +
        path + ": a full disk will be noticed only when a commit fails");
}

std::vector<AllocQueueInfo> Durability::Recover(BrokerCore& core) {
  if (!sqlite_) return {};
  auto jobs = sqlite_->Load();
  size_t tasks = 0;
  for (const auto& j : jobs) tasks += j.tasks.size();
  const auto now = SteadyTime::clock::now();
  core.RestoreLimits(sqlite_->LoadLimits(), now);
  core.Restore(std::move(jobs), now, WallNow());
  if (tasks) Log("recovered " + std::to_string(tasks) + " tasks from " + path_);
  auto queues = sqlite_->LoadAllocQueues();
  if (!queues.empty())
    Log("recovered " + std::to_string(queues.size()) +
        " allocation queues; asking the batch system how their allocations are");
  // Outcomes decided while restoring (worker_lost, cancelled).
  if (auto written = sqlite_->Commit(); !written.ok())
    throw std::runtime_error(written.error().sentence);
  return queues;
}

// Replies leave only after the journal commit, so nothing a client was told can be lost;
// replies whose commit failed wait (held_) for one that succeeds. A journal without fsync (orq
// run's own broker: a store for the run's results that promises nothing past it) is committed
// every kStoreCommitInterval instead, and replies leave at once: a commit per turn was a tenth of
// a short shell task's cost.
Durability::Committed Durability::Commit(std::vector<Outgoing> replies, SteadyTime now,
                                         BrokerCore& core) {
  Committed turn;
  const bool store_only = sqlite_ && !sync_ && held_.empty();
  bool durable = true;
  if (!store_only || now >= next_commit_) {
    durable = CommitJournal(core);
    turn.written = durable;
    next_commit_ = now + kStoreCommitInterval;
  }
  if (!durable) {
    for (Outgoing& o : replies) held_.push_back(std::move(o));
    return turn;
  }
  turn.replies = std::exchange(held_, {});  // decided in earlier turns: before this turn's
  for (Outgoing& o : replies) turn.replies.push_back(std::move(o));
  return turn;
}

// Commits the journal; false when it cannot. A first failure releases the reserve and tries
// again, so the turn's commit fits; from then on the broker is in disk trouble (SetProblem).
bool Durability::CommitJournal(BrokerCore& core) {
  if (!sqlite_) return true;
  const bool dirty = sqlite_->dirty();
  const auto started = SteadyTime::clock::now();
  auto written = sqlite_->Commit();
  if (dirty && written.ok())
    core.metrics().commit.Observe(
        std::chrono::duration<double>(SteadyTime::clock::now() - started).count());
  if (!written.ok() && space_->Release()) {
    Log("the journal could not be written (" + written.error().sentence +
        "); released its reserve of " + Mebibytes(space_->reserve_bytes()));
    SetProblem(core);
    written = sqlite_->Commit();
  }
  if (!written.ok()) {
    if (held_.empty())
      Log("the journal cannot be written (" + written.error().sentence + "); replies wait");
    SetProblem(core);
    return false;
  }
  return true;
}

void Durability::CheckSpace(SteadyTime now, BrokerCore& core) {
  if (!space_ || now < next_space_check_) return;
  next_space_check_ = now + kSpaceCheckInterval;
  uint64_t bytes = 0;  // the journal and its write-ahead log
  for (const char* suffix : {"", "-wal"}) {
    std::error_code error;
    const auto size = std::filesystem::file_size(path_ + suffix, error);
    if (!error) bytes += size;
  }
  core.metrics().journal_bytes = bytes;
  if (problem_.empty()) {
    if (space_->FreeBytes() < kLowSpace) SetProblem(core);
    return;
  }
  if (!held_.empty() || sqlite_->dirty() || !space_->Reserve()) return;
  if (space_->FreeBytes() < 2 * kLowSpace) {
    space_->Release();
    return;
  }
  problem_.clear();
  Log("the journal's disk has room again (" + Mebibytes(space_->FreeBytes()) +
      " free): accepting work");
  core.SetJournalProblem("");
}

void Durability::SetProblem(BrokerCore& core) {
  const std::string problem = "the journal's disk is full (" + Mebibytes(space_->FreeBytes()) +
                              " free for " + path_ +
                              "): submits are refused and no new task starts until space is freed";
  if (problem_.empty()) Log(problem);
  problem_ = problem;
  core.SetJournalProblem(problem);
}

// The reserve is not counted: it is for commits already decided. When the disk is full, the core
// refuses the submit itself (it was told of the problem).
Expected<void> Durability::RoomFor(uint64_t bytes, BrokerCore& core) {
  if (!space_ || !problem_.empty()) return {};
  const uint64_t free = space_->FreeBytes();
  if (free >= 2 * bytes + kLowSpace) return {};
  if (free < kLowSpace) {
    SetProblem(core);
    return {};
  }
  return Error{ErrorCode::kDiskFull, "nothing was accepted: this job needs about " +
                                         Mebibytes(2 * bytes) + " of journal, and its disk has " +
                                         Mebibytes(free) + " free for " + path_};
}

void Durability::Close() {
  if (!sqlite_) return;
  if (auto written = sqlite_->Commit(); !written.ok())
    Log("stopping without writing the last results (" + written.error().sentence +
        "): their tasks run again after a restart");
}

}  // namespace orq
