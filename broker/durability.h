// The broker's durability: the journal it keeps (SQLite, or results in memory with
// --no-journal), when it commits, and the disk it lives on. A reply to a client leaves only after
// the commit that makes it true, so nothing a client was told is lost in a crash; replies whose
// commit failed (a full disk) wait, in order, for one that succeeds. The disk is watched: nearly
// full, the broker refuses work before a commit fails (BrokerCore::SetJournalProblem), and a
// reserve file gives the turn that fills it room to commit what it decided.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "broker/core/broker_core.h"
#include "broker/core/journal.h"
#include "broker/core/outbox.h"
#include "broker/core/store.h"
#include "broker/journal_space.h"
#include "broker/sqlite_journal.h"
#include "common/clock.h"

namespace orq {

class Durability {
 public:
  // The journal at `path` (opened, or created), committed with an fsync each turn when `sync`
  // (else every kStoreCommitInterval: orq run's own broker); an empty `path`: no journal, results
  // in memory. Throws std::runtime_error with a sentence when the journal cannot be opened.
  Durability(const std::string& path, bool sync);

  // What the core keeps its jobs and outcomes in, and records its events to.
  Store& store() { return sqlite_ ? static_cast<Store&>(*sqlite_) : memory_; }
  Journal& journal() { return sqlite_ ? static_cast<Journal&>(*sqlite_) : null_; }
  // Brings back what the journal kept into `core` (jobs, limits), before any message; returns
  // the allocation queues it kept, for the allocator. Commits what restoring decided.
  std::vector<AllocQueueInfo> Recover(BrokerCore& core);
  SqliteJournal* sqlite() { return sqlite_.get(); }

  // The end of a loop turn: commits the journal (each turn, or every kStoreCommitInterval without
  // fsync) and returns the replies to send now: those held from earlier turns first, then
  // `replies`; none while the journal cannot be written (they are held).
  struct Committed {
    std::vector<Outgoing> replies;  // to send now, in order
    bool written = false;           // this turn's work is on disk (a commit succeeded)
  };
  Committed Commit(std::vector<Outgoing> replies, SteadyTime now, BrokerCore& core);
  // Every kSpaceCheckInterval: a disk nearly full puts the broker in disk trouble before a commit
  // fails; room for the reserve again ends it.
  void CheckSpace(SteadyTime now, BrokerCore& core);
  // Whether a submit of `bytes` on the wire fits in the journal (its specs take about as much
  // again); the error to reply when it does not.
  Expected<void> RoomFor(uint64_t bytes, BrokerCore& core);
  // At stop: the last commit; a failure is logged (those tasks run again after a restart).
  void Close();

 private:
  bool CommitJournal(BrokerCore& core);
  void SetProblem(BrokerCore& core);

  const std::string path_;
  const bool sync_;
  MemoryStore memory_;  // without a journal (else the journal is the store)
  NullJournal null_;
  std::unique_ptr<SqliteJournal> sqlite_;  // null without a journal
  std::unique_ptr<JournalSpace> space_;    // the journal's disk; null without a journal
  std::string problem_;                    // the disk trouble the core was told of; empty: none
  std::vector<Outgoing> held_;             // client replies whose commit failed, in order
  SteadyTime next_space_check_{};
  SteadyTime next_commit_{};  // a journal without fsync: when to commit next
};

}  // namespace orq
