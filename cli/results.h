// Results as they come: `orq run` and `orq gather` stream a job's outcomes from the broker in
// finishing order (GatherRequest::stream) and print them in order as soon as every earlier one is
// in (or in finishing order with --unordered / --as-completed), with GNU parallel's --tag, --halt
// and --joblog. The pure parts (the order, the halt rule, the joblog's lines) are functions and
// small classes; Gatherer is the loop over the client.
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cli/progress.h"
#include "common/errors.h"
#include "common/protocol.h"

namespace orq {

class Connection;

// --halt WHEN,fail=N|success=N|fail=P%|success=P% (or GNU parallel's 0, 1, 2; "never").
// The broker applies it (HaltPolicy, common/protocol.h); the CLI tells the same from the outcomes
// it gets, to say why it stopped.
struct HaltRule : HaltPolicy {
  std::string text;  // as given, for sentences
};
// nullopt for "never" / "0". Throws UsageError with the accepted forms.
std::optional<HaltRule> ParseHalt(const std::string& text);  // then HaltDecided(rule, ...)

// Outcomes a gather holds in memory while they wait for an earlier one (ResultOrder); the rest
// wait in a file under $TMPDIR, as GNU parallel's --keep-order buffers output in files.
inline constexpr size_t kOrderMemoryBytes = 64u << 20;

// An unlinked temporary file under $TMPDIR (else /tmp) that bytes are appended to and read back
// from; removed by the system when closed, whatever ends the process. Made at the first Append.
class SpillFile {
 public:
  SpillFile() = default;
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;
  ~SpillFile();
  // Where `bytes` begin in the file. Throws std::runtime_error (a full disk) with a sentence.
  uint64_t Append(const std::string& bytes);
  std::string Read(uint64_t offset, size_t size) const;

 private:
  int fd_ = -1;
  uint64_t end_ = 0;
};

// The order of a gather's results: the ids as named, a job standing for all its tasks (`sizes`,
// from the broker's first chunk, says how many). Put() files an outcome in its place (the first
// free one, when a task is named twice); Pop() gives the next ones in order while they are in.
// Those that wait (behind a task still running) are kept in memory up to `memory_bytes`, then in
// a SpillFile, so that a gather of any size in any finishing order holds a bounded amount.
class ResultOrder {
 public:
  ResultOrder(const std::vector<std::string>& ids, const std::vector<uint32_t>& sizes,
              size_t memory_bytes = kOrderMemoryBytes);
  void Put(TaskOutcome outcome);
  std::optional<TaskOutcome> Pop();
  // Gives `f` what is in but not yet popped (behind a task still running), in order, one at a
  // time; the order is then over.
  void Rest(const std::function<void(const TaskOutcome&)>& f);
  size_t total() const { return total_; }
  // What waits in memory, and how many wait in the file (for tests).
  size_t held_bytes() const { return held_bytes_; }
  size_t spilled() const { return spilled_; }

 private:
  struct Entry {
    uint64_t job;
    std::optional<uint32_t> index;  // a single task; else the whole job
    size_t offset;
  };
  // An outcome that waits: in memory, or encoded in spill_ at offset (size bytes).
  struct Held {
    std::optional<TaskOutcome> outcome;
    uint64_t offset = 0;
    size_t size = 0;
  };
  TaskOutcome Take(Held& held);
  std::vector<Entry> entries_;
  size_t total_ = 0;  // places in the order
  // The outcomes in but not yet popped, by place: only those that came before an earlier one,
  // so a gather of millions in order holds next to nothing.
  std::unordered_map<size_t, Held> waiting_;
  size_t next_ = 0;  // the next place to pop
  size_t memory_bytes_;
  size_t held_bytes_ = 0;  // ApproxWireBytes of those waiting in memory
  size_t spilled_ = 0;     // of those waiting, how many are in spill_
  SpillFile spill_;
};

// A joblog line in GNU parallel's columns (Seq Host Starttime JobRuntime Send Receive Exitval
// Signal Command), tab-separated; the header is kJoblogHeader.
inline constexpr const char* kJoblogHeader =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";
std::string JoblogLine(uint64_t seq, const TaskOutcome& outcome, const std::string& command);
// A joblog's last entry per Seq: whether that run succeeded (Exitval 0, Signal 0), and its Command.
struct JoblogEntry {
  bool ok = false;
  std::string command;
};
std::vector<std::pair<uint64_t, JoblogEntry>> ReadJoblog(const std::string& path);

// What the CLI knows of a job it built itself (orq run): per task, the tag (--tag), the command
// (joblog) and GNU parallel's sequence number; empty for a job it did not build.
struct LocalTasks {
  std::vector<std::string> tags;      // "" falls back to the task's id
  std::vector<std::string> commands;  // shell line (joblog); empty when no task is a shell task
  std::vector<uint64_t> seqs;
};

struct OutputOptions {
  bool json = false;
  bool tag = false;
  bool unordered = false;        // finishing order (--unordered, --as-completed)
  std::set<TaskStatus> only;     // --status: print only these (empty: all)
  std::optional<HaltRule> halt;  // orq run
  bool first = false;            // gather --first: the first to finish, then stop
  bool fail_fast = false;        // gather --fail-fast: stop at the first that did not end ok
  std::FILE* joblog = nullptr;   // --joblog
  Progress* progress = nullptr;  // the progress line, if shown
};

struct GatherSummary {
  size_t total = 0, ok = 0, failed = 0, cancelled_by_halt = 0;
  std::optional<std::string> halted;  // why it halted
};

// Streams the results of a gather and prints them, in order (or as they finish), with a joblog,
// a progress line (asking the broker twice a second how many of the jobs' tasks run) and the
// summary; stops at the first result, the first failure or a --halt when asked to.
class Gatherer {
 public:
  using Clock = std::chrono::steady_clock;
  Gatherer(Connection& client, const OutputOptions& options, const LocalTasks* local = nullptr)
      : client_(client), options_(options), local_(local) {}

  // Gathers `ids`; kTimeout when `deadline` passes first. An interrupt (Unreachable while
  // `interrupted()`) prints what had finished, then rethrows.
  ExitCode Run(const std::vector<std::string>& ids,
               Clock::time_point deadline = Clock::time_point::max(),
               const std::function<bool()>& interrupted = nullptr);
  const GatherSummary& summary() const { return summary_; }

 private:
  // Takes one reply; a set exit code ends the gather.
  std::optional<ExitCode> Take(Message reply, const std::vector<std::string>& ids);
  // Counts, logs and prints (or keeps in order) one outcome; a set exit code ends the gather.
  std::optional<ExitCode> Outcome(TaskOutcome o);
  void WriteJoblog(const TaskOutcome& o);
  void Tick();          // the progress line, and the broker asked how many tasks run
  void FlushOrdered();  // prints the results whose turn has come
  ExitCode Report();    // the failures on stderr; the exit code

  Connection& client_;
  const OutputOptions& options_;
  const LocalTasks* local_;
  GatherSummary summary_;
  std::optional<ResultOrder> order_;
  std::vector<std::string> failures_;
  bool final_ = false;  // the broker sent the last chunk
  // The progress line: counts from the stream, running tasks from the broker (JobsRequest).
  Progress* progress_ = nullptr;
  ProgressState state_;
  std::vector<uint64_t> jobs_;  // the jobs named, for JobsRequest
  bool asked_ = false;          // a JobsRequest is on its way
  Clock::time_point began_, last_asked_;
};

}  // namespace orq
