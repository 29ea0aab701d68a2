#include "cli/results.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cli/format.h"
#include "cli/verbs.h"
#include "client/connection.h"
#include "common/codec.h"
#include "common/ids.h"

namespace orq {

std::optional<HaltRule> ParseHalt(const std::string& text) {
  auto bad = [&] {
    return UsageError(
        "--halt takes now,fail=N, soon,fail=N, now,success=N, soon,success=N (N a "
        "count or a percentage, as 10%), or 0, 1, 2; not '" +
        text + "'");
  };
  if (text == "never" || text == "0") return std::nullopt;
  HaltRule rule;
  rule.text = text;
  rule.threshold = 1;
  if (text == "1" || text == "2") {  // GNU parallel's old forms: soon,fail=1 and now,fail=1
    rule.now = text == "2";
    return rule;
  }
  const size_t comma = text.find(',');
  if (comma == std::string::npos) throw bad();
  const std::string when = text.substr(0, comma), what = text.substr(comma + 1);
  if (when != "now" && when != "soon") throw bad();
  rule.now = when == "now";
  const size_t eq = what.find('=');
  if (eq == std::string::npos) throw bad();
  const std::string kind = what.substr(0, eq);
  std::string number = what.substr(eq + 1);
  if (kind != "fail" && kind != "success") throw bad();
  rule.on_failure = kind == "fail";
  if (!number.empty() && number.back() == '%') {
    rule.percent = true;
    number.pop_back();
  }
  std::istringstream in(number);
  std::string rest;
  if (!(in >> rule.threshold) || (in >> rest) || !std::isfinite(rule.threshold) ||
      rule.threshold <= 0 || (rule.percent && rule.threshold > 100) ||
      (!rule.percent && rule.threshold != std::floor(rule.threshold)))
    throw bad();
  return rule;
}

SpillFile::~SpillFile() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t SpillFile::Append(const std::string& bytes) {
  if (fd_ < 0) {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir = tmp && *tmp ? tmp : "/tmp";
    // O_TMPFILE: never linked, so nothing is left behind; else a named file unlinked at once.
    fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      std::string name = dir + "/orq-gather-XXXXXX";
      fd_ = ::mkostemp(name.data(), O_CLOEXEC);
      if (fd_ >= 0) ::unlink(name.c_str());
    }
    if (fd_ < 0)
      throw std::runtime_error(
          "orq gather: cannot make a file in " + dir +
          " for results that wait for an earlier one: " + std::strerror(errno));
  }
  const uint64_t at = end_;
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n =
        ::pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(end_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error(
          "orq gather: cannot keep results that wait for an earlier one in $TMPDIR: " +
          std::string(n < 0 ? std::strerror(errno) : "short write"));
    done += static_cast<size_t>(n);
  }
  end_ += bytes.size();
  return at;
}

std::string SpillFile::Read(uint64_t offset, size_t size) const {
  std::string bytes(size, '\0');
  for (size_t done = 0; done < size;) {
    const ssize_t n =
        ::pread(fd_, bytes.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error("orq gather: cannot read back results kept in $TMPDIR: " +
                               std::string(n < 0 ? std::strerror(errno) : "the file is short"));
    done += static_cast<size_t>(n);
  }
  return bytes;
}

ResultOrder::ResultOrder(const std::vector<std::string>& ids, const std::vector<uint32_t>& sizes,
                         size_t memory_bytes)
    : memory_bytes_(memory_bytes) {
  size_t offset = 0;
  for (size_t i = 0; i < ids.size() && i < sizes.size(); ++i) {
    auto ref = ParseId(ids[i]);
    if (!ref) continue;
    entries_.push_back({ref->job, ref->index, offset});
    offset += sizes[i];
  }
  total_ = offset;
}

void ResultOrder::Put(TaskOutcome outcome) {
  for (const Entry& e : entries_) {
    if (e.job != outcome.id.job || (e.index && *e.index != outcome.id.index)) continue;
    const size_t at = e.offset + (e.index ? 0 : outcome.id.index);
    if (at < total_ && at >= next_ && !waiting_.count(at)) {
      Held held;
      const size_t bytes = ApproxWireBytes(outcome);
      if (held_bytes_ + bytes <= memory_bytes_ || at == next_) {
        held_bytes_ += bytes;
        held.outcome = std::move(outcome);
      } else {
        const std::string encoded = EncodeOutcome(outcome);
        held.offset = spill_.Append(encoded);
        held.size = encoded.size();
        ++spilled_;
      }
      waiting_.emplace(at, std::move(held));
      return;
    }
  }
}

TaskOutcome ResultOrder::Take(Held& held) {
  if (held.outcome) {
    held_bytes_ -= ApproxWireBytes(*held.outcome);
    return std::move(*held.outcome);
  }
  --spilled_;
  auto outcome = DecodeOutcome(spill_.Read(held.offset, held.size));
  if (!outcome) throw std::runtime_error("orq gather: results kept in $TMPDIR came back corrupt");
  return std::move(*outcome);
}

std::optional<TaskOutcome> ResultOrder::Pop() {
  auto it = waiting_.find(next_);
  if (it == waiting_.end()) return std::nullopt;
  TaskOutcome out = Take(it->second);
  waiting_.erase(it);
  ++next_;
  return out;
}

void ResultOrder::Rest(const std::function<void(const TaskOutcome&)>& f) {
  std::vector<size_t> places;
  places.reserve(waiting_.size());
  for (const auto& [at, held] : waiting_) places.push_back(at);
  std::sort(places.begin(), places.end());
  for (size_t at : places) f(Take(waiting_.at(at)));
  waiting_.clear();
  next_ = total_;
}

std::string JoblogLine(uint64_t seq, const TaskOutcome& o, const std::string& command) {
  int exitval = o.status == TaskStatus::kOk ? 0 : -1;
  int signal = 0;
  size_t received = 0;
  if (o.shell) {
    exitval = o.shell->exit_code;
    received = o.shell->stdout_text.size();
    constexpr std::string_view kKilled = "killed by signal ";
    if (o.error.rfind(kKilled, 0) == 0) {
      signal = std::atoi(o.error.c_str() + kKilled.size());
      exitval = -1;
    }
  } else if (o.status == TaskStatus::kOk) {
    received = o.result.size();
  }
  if (o.status != TaskStatus::kOk && exitval == 0) exitval = -1;  // cancelled, lost: not a success
  char head[160];
  std::snprintf(head, sizeof head, "%llu\t:\t%.3f\t%10.3f\t0\t%zu\t%d\t%d\t",
                static_cast<unsigned long long>(seq), o.started,
                o.finished > o.started ? o.finished - o.started : 0.0, received, exitval, signal);
  return head + command + "\n";
}

std::vector<std::pair<uint64_t, JoblogEntry>> ReadJoblog(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("cannot read the joblog " + path);
  std::vector<std::pair<uint64_t, JoblogEntry>> entries;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (number == 1 && line.rfind("Seq\t", 0) == 0) continue;
    std::vector<std::string> fields;
    size_t start = 0;
    for (int i = 0; i < 8; ++i) {
      size_t tab = line.find('\t', start);
      if (tab == std::string::npos) break;
      fields.push_back(line.substr(start, tab - start));
      start = tab + 1;
    }
    if (fields.size() != 8)
      throw UsageError(path + ":" + std::to_string(number) +
                       ": not a joblog line (9 tab-separated columns: Seq Host Starttime "
                       "JobRuntime Send Receive Exitval Signal Command)");
    JoblogEntry e;
    e.ok = fields[6] == "0" && fields[7] == "0";
    e.command = line.substr(start);
    entries.emplace_back(std::stoull(fields[0]), std::move(e));
  }
  return entries;
}

namespace {

// Prints one outcome as the options say; `halted` hides what the halt cancelled in text form.
void Print(const TaskOutcome& o, const OutputOptions& options, const LocalTasks* local,
           bool halted) {
  if (!options.only.empty() && !options.only.count(o.status)) return;
  const size_t i = o.id.index;
  if (options.json) {
    nlohmann::json j = ToJson(o);  // with the command: the broker's reply carries it
    if (local && i < local->seqs.size()) j["seq"] = local->seqs[i];
    std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
    return;
  }
  if (halted && o.status == TaskStatus::kCancelled) return;  // never ran: nothing to show
  std::string tag;
  if (options.tag) {
    tag = local && i < local->tags.size() && !local->tags[i].empty() ? local->tags[i]
                                                                     : FormatTaskId(o.id);
  }
  PrintText(o, stdout, tag);
}

}  // namespace

ExitCode Gatherer::Run(const std::vector<std::string>& ids, Clock::time_point deadline,
                       const std::function<bool()>& interrupted) {
  client_.Send(GatherRequest{ToIds(ids), /*stream=*/true});
  progress_ = options_.progress && options_.progress->enabled() ? options_.progress : nullptr;
  began_ = Clock::now();
  last_asked_ = began_ - std::chrono::seconds(1);
  for (const IdRef& id : ToIds(ids)) {
    if (std::find(jobs_.begin(), jobs_.end(), id.job) == jobs_.end()) jobs_.push_back(id.job);
  }
  try {
    while (!final_) {
      // A signal that came between two polls (not during one, which ends it with EINTR).
      if (interrupted && interrupted()) throw Unreachable("interrupted");
      auto reply =
          client_.Receive(std::min(deadline, Clock::now() + std::chrono::milliseconds(200)));
      if (!reply && Clock::now() >= deadline) {
        if (progress_) progress_->Clear();
        return ExitCode::kTimeout;
      }
      if (!reply) {
        Tick();
        continue;
      }
      if (auto code = Take(std::move(*reply), ids)) return *code;
    }
  } catch (const Unreachable&) {
    if (progress_) progress_->Clear();
    if (!interrupted || !interrupted()) throw;
    // Ctrl-C: what finished is shown, even behind a task that had not.
    if (order_) {
      FlushOrdered();
      order_->Rest([&](const TaskOutcome& o) { Print(o, options_, local_, false); });
    }
    std::fflush(stdout);
    throw;
  }
  return Report();
}

std::optional<ExitCode> Gatherer::Take(Message reply, const std::vector<std::string>& ids) {
  if (auto* jobs = std::get_if<JobsReply>(&reply)) {  // the progress line's question
    asked_ = false;
    state_.running = 0;
    for (const JobInfo& j : jobs->jobs) state_.running += j.running;
    Tick();
    return std::nullopt;
  }
  if (auto* error = std::get_if<ErrorReply>(&reply)) {
    const std::string sentence = "orq gather: " + error->message;
    if (ExitCodeOf(error->code) == ExitCode::kUsage) throw UsageError(sentence);
    throw std::runtime_error(sentence);
  }
  auto* results = std::get_if<ResultsReply>(&reply);
  if (!results) throw std::runtime_error("orq gather: the broker sent an unexpected reply");
  if (!results->final) client_.Send(ResultsAck{});  // room for one more chunk
  if (!order_) order_.emplace(ids, results->sizes);
  for (TaskOutcome& o : results->outcomes) {
    if (auto code = Outcome(std::move(o))) return code;
  }
  if (!options_.unordered) FlushOrdered();
  std::fflush(stdout);
  final_ = results->final;
  if (!final_) Tick();
  return std::nullopt;
}

std::optional<ExitCode> Gatherer::Outcome(TaskOutcome o) {
  ++summary_.total;
  const bool ok = o.status == TaskStatus::kOk;
  if (ok) {
    ++summary_.ok;
  } else if (summary_.halted && o.status == TaskStatus::kCancelled) {
    ++summary_.cancelled_by_halt;
  } else {
    ++summary_.failed;
    failures_.push_back(FailureSentence(o));
  }
  WriteJoblog(o);
  const bool stop = options_.first || (options_.fail_fast && !ok);
  if (options_.unordered || stop) {
    if (progress_) progress_->Clear();
    Print(o, options_, local_, summary_.halted.has_value());
  } else {
    order_->Put(std::move(o));
  }
  if (stop) {
    std::fflush(stdout);
    return ok ? ExitCode::kOk : ExitCode::kTaskFailed;
  }
  if (options_.halt && !summary_.halted &&
      HaltDecided(*options_.halt, summary_.failed, summary_.ok)) {
    // (The broker halted the job itself when this outcome ended it: nothing to send.)
    summary_.halted = std::string(options_.halt->on_failure ? "a failure" : "a success") +
                      " (--halt " + options_.halt->text + ")";
  }
  return std::nullopt;
}

// The joblog has the tasks that ran to their end: --resume runs the others (cancelled by --halt
// or Ctrl-C, lost with a worker, never started for a failed dependency).
void Gatherer::WriteJoblog(const TaskOutcome& o) {
  const bool ran = o.status == TaskStatus::kOk || o.status == TaskStatus::kFailed ||
                   o.status == TaskStatus::kTimeout;
  if (!options_.joblog || !ran) return;
  const size_t i = o.id.index;
  const uint64_t seq = local_ && i < local_->seqs.size() ? local_->seqs[i] : i + 1;
  const std::string command =
      local_ && i < local_->commands.size() ? local_->commands[i] : FormatTaskId(o.id);
  const std::string line = JoblogLine(seq, o, command);
  std::fwrite(line.data(), 1, line.size(), options_.joblog);
  std::fflush(options_.joblog);
}

void Gatherer::Tick() {
  if (!progress_) return;
  if (!asked_ && Clock::now() - last_asked_ >= std::chrono::milliseconds(500)) {
    client_.Send(JobsRequest{jobs_});
    asked_ = true;
    last_asked_ = Clock::now();
  }
  state_.total = order_ ? order_->total() : 0;
  state_.ok = summary_.ok;
  state_.failed = summary_.failed + summary_.cancelled_by_halt;
  state_.elapsed = std::chrono::duration<double>(Clock::now() - began_).count();
  progress_->Draw(state_);
}

void Gatherer::FlushOrdered() {
  if (progress_) progress_->Clear();
  while (auto o = order_->Pop()) Print(*o, options_, local_, summary_.halted.has_value());
  std::fflush(stdout);
}

ExitCode Gatherer::Report() {
  if (progress_) progress_->Clear();
  constexpr size_t kShown = 20;
  for (size_t i = 0; i < failures_.size() && i < kShown; ++i)
    std::fprintf(stderr, "%s\n", failures_[i].c_str());
  if (failures_.size() > kShown)
    std::fprintf(stderr, "orq: ... and %zu more tasks did not end ok\n", failures_.size() - kShown);
  if (summary_.halted && options_.halt && !options_.halt->on_failure) return ExitCode::kOk;
  return summary_.failed ? ExitCode::kTaskFailed : ExitCode::kOk;
}

}  // namespace orq
