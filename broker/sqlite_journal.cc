#include "broker/sqlite_journal.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>

#include "common/clock.h"
#include "common/codec.h"
#include "common/errors.h"

namespace orq {
namespace {

// (Kind 4 held batches of outcomes before format 4 gave them their own table.)
enum EventKind : int { kLeases = 1, kRetries = 2, kCancels = 3 };

// Leases and cancels are fixed-size records, copied as they are in memory: the journal stays on
// the host that wrote it, and orq builds only where that is little-endian (checked here).
static_assert(std::endian::native == std::endian::little,
              "the journal's records are little-endian");
template <typename T> std::string Pack(const std::vector<T>& items) {
  std::string out(items.size() * sizeof(T), '\0');
  if (!items.empty()) std::memcpy(out.data(), items.data(), out.size());
  return out;
}
template <typename T> std::vector<T> Unpack(std::string_view bytes) {
  std::vector<T> items(bytes.size() / sizeof(T));
  if (!items.empty()) std::memcpy(items.data(), bytes.data(), items.size() * sizeof(T));
  return items;
}

struct PackedLease {
  uint32_t index;
  uint32_t attempt;
};

// A prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, double v) {
    sqlite3_bind_double(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, const std::string& blob) {
    sqlite3_bind_blob(stmt_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    return *this;
  }
  // Runs a statement that returns no rows, then resets it for reuse.
  void Run() {
    int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    if (rc != SQLITE_DONE) throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db_));
  }
  void Reset() { sqlite3_reset(stmt_); }
  bool Next() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db_));
    return false;
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) { return sqlite3_column_double(stmt_, col); }
  std::string_view Blob(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    return {static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace

std::unique_ptr<SqliteJournal> SqliteJournal::Open(const std::string& path, bool durable) {
  sqlite3* db = nullptr;
  // Owner-only from its first byte; SQLite gives the -wal and -shm files the database's mode.
  struct Umask {
    mode_t old = ::umask(0177);
    ~Umask() { ::umask(old); }
  } umask_while_opening;
  // One thread uses it (the broker's loop): no mutex around every call.
  // A link in its place is refused, never followed (SQLITE_OPEN_NOFOLLOW).
  if (sqlite3_open_v2(
          path.c_str(), &db,
          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
          nullptr) != SQLITE_OK) {
    std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    const bool link = db && sqlite3_extended_errcode(db) == SQLITE_CANTOPEN_SYMLINK;
    sqlite3_close(db);
    if (link)
      throw UsageError(path +
                       " is a symbolic link; orq does not follow links among its own "
                       "files: remove it");
    throw std::runtime_error("cannot open the journal " + path + ": " + why);
  }
  std::unique_ptr<SqliteJournal> journal(new SqliteJournal(db));
  // One broker per journal: the first access takes the file's lock and keeps it until the broker
  // closes it. A second broker on the same journal is refused ("database is locked"), and reads
  // (gathers read outcomes back) take no lock each (and WAL needs no shared memory).
  journal->Exec("PRAGMA locking_mode=EXCLUSIVE");
  // Space freed by forgotten jobs goes back to the filesystem (Commit() vacuums after a forget);
  // only a new journal takes this, so every journal of this format has it.
  journal->Exec("PRAGMA auto_vacuum=INCREMENTAL");
  journal->Exec("PRAGMA journal_mode=WAL");
  journal->Exec(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
  // The write-ahead log is cut back to 64 MiB after each checkpoint (a big submit passes through
  // it), instead of keeping its largest size for ever.
  journal->Exec("PRAGMA journal_size_limit=67108864");
  int64_t format = 0;
  bool has_tables = false;
  {
    Statement version(db, "PRAGMA user_version");
    if (version.Next()) format = version.Int(0);
    Statement tables(db, "SELECT count(*) FROM sqlite_master WHERE name='jobs'");
    has_tables = tables.Next() && tables.Int(0) > 0;
  }
  if (has_tables && format != kJournalFormat) {
    const int found = format == 0 ? 1 : static_cast<int>(format);
    throw std::runtime_error("the journal " + path + " is in format " + std::to_string(found) +
                             " and this orq reads format " + std::to_string(kJournalFormat) +
                             ": gather its jobs with the orq that wrote it, or move it away");
  }
  journal->Exec(
      "CREATE TABLE IF NOT EXISTS jobs(job INTEGER PRIMARY KEY, submitted REAL NOT NULL,"
      " size INTEGER NOT NULL, context BLOB NOT NULL);"
      "CREATE TABLE IF NOT EXISTS specs(job INTEGER NOT NULL, part INTEGER NOT NULL,"
      " body BLOB NOT NULL, PRIMARY KEY(job, part));"
      "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
      " job INTEGER NOT NULL, kind INTEGER NOT NULL, body BLOB NOT NULL);"
      "CREATE INDEX IF NOT EXISTS events_job ON events(job);"
      "CREATE TABLE IF NOT EXISTS limits(name TEXT PRIMARY KEY, max INTEGER NOT NULL,"
      " rate REAL NOT NULL, burst INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS keys(key BLOB PRIMARY KEY, job INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS outcomes(job INTEGER NOT NULL, idx INTEGER NOT NULL,"
      " status INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY(job, idx)) WITHOUT ROWID;"
      "CREATE INDEX IF NOT EXISTS keys_job ON keys(job);"
      "CREATE TABLE IF NOT EXISTS allocs(name TEXT PRIMARY KEY, body BLOB NOT NULL);");
  journal->Exec(("PRAGMA user_version=" + std::to_string(kJournalFormat)).c_str());
  return journal;
}

SqliteJournal::SqliteJournal(sqlite3* db) : db_(db) {}

SqliteJournal::~SqliteJournal() {
  sqlite3_finalize(find_range_);
  sqlite3_finalize(find_specs_);
  sqlite3_close(db_);
}

void SqliteJournal::Exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    std::string why = error ? error : "unknown error";
    sqlite3_free(error);
    throw std::runtime_error("journal: " + why);
  }
}

void SqliteJournal::AddJob(uint64_t job, uint32_t size, std::vector<std::string> windows,
                           const JobContext& context, const std::string& key) {
  Pending& p = pending_[job];
  p.added = true;
  p.size = size;
  p.windows = std::move(windows);
  p.context = EncodeContext(context);
  if (!key.empty()) keys_.push_back({job, key});
}
void SqliteJournal::RecordLease(TaskId id, uint32_t attempt) {
  pending_[id.job].leases.push_back({id, attempt});
}
void SqliteJournal::RecordRetry(TaskId id, double delay, const std::string& error) {
  pending_[id.job].retries.push_back({id.index, WallNow() + delay, error});
}
void SqliteJournal::RecordCancelRequest(TaskId id) { pending_[id.job].cancels.push_back(id.index); }
void SqliteJournal::Put(TaskOutcome outcome) {
  outcomes_.insert_or_assign(outcome.id, PendingOutcome{outcome.status, EncodeOutcome(outcome)});
}
void SqliteJournal::Forget(uint64_t job, uint32_t /*size: one statement deletes them all*/) {
  pending_.erase(job);
  std::erase_if(outcomes_, [job](const auto& entry) { return entry.first.job == job; });
  forgotten_.push_back(job);
}

std::optional<TaskOutcome> SqliteJournal::Find(TaskId id) {
  std::vector<std::optional<TaskOutcome>> one;
  FindRange(id.job, id.index, 1, one, SIZE_MAX);
  return std::move(one.front());
}

void SqliteJournal::RecordLimit(const LimitSpec& limit, bool removed) {
  limits_.push_back({limit, removed});
}

std::vector<LimitSpec> SqliteJournal::LoadLimits() {
  std::vector<LimitSpec> limits;
  Statement select(db_, "SELECT name, max, rate, burst FROM limits ORDER BY name");
  while (select.Next()) {
    const std::string_view name = select.Blob(0);
    limits.push_back({std::string(name), static_cast<uint32_t>(select.Int(1)), select.Real(2),
                      static_cast<uint32_t>(select.Int(3))});
  }
  return limits;
}

void SqliteJournal::RecordAllocQueue(const std::string& name, std::optional<AllocQueueInfo> queue) {
  allocs_.push_back({name, queue ? std::optional(EncodeAllocQueue(*queue)) : std::nullopt});
}

std::vector<AllocQueueInfo> SqliteJournal::LoadAllocQueues() {
  std::vector<AllocQueueInfo> queues;
  Statement select(db_, "SELECT name, body FROM allocs ORDER BY name");
  while (select.Next()) {
    auto queue = DecodeAllocQueue(select.Blob(1));
    if (!queue)
      throw std::runtime_error("journal: the allocation queue " + std::string(select.Blob(0)) +
                               " is corrupt");
    queues.push_back(std::move(*queue));
  }
  return queues;
}

std::optional<std::vector<TaskSpec>> SqliteJournal::Specs(uint64_t job, uint32_t window) {
  if (auto it = pending_.find(job); it != pending_.end() && it->second.added) {
    if (window >= it->second.windows.size()) return std::nullopt;
    return DecodeSpecs(it->second.windows[window]);
  }
  if (!find_specs_ && sqlite3_prepare_v2(db_, "SELECT body FROM specs WHERE job=? AND part=?", -1,
                                         &find_specs_, nullptr) != SQLITE_OK)
    throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db_));
  sqlite3_bind_int64(find_specs_, 1, static_cast<int64_t>(job));
  sqlite3_bind_int64(find_specs_, 2, window);
  std::optional<std::vector<TaskSpec>> specs;
  const int rc = sqlite3_step(find_specs_);
  if (rc == SQLITE_ROW) {
    const void* p = sqlite3_column_blob(find_specs_, 0);
    specs = DecodeSpecs(
        {static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(find_specs_, 0))});
  }
  sqlite3_reset(find_specs_);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db_));
  return specs;
}

void SqliteJournal::CommitOrThrow() {
  if (!dirty()) return;
  Exec("BEGIN");
  try {
    WriteJobs();
    WriteOutcomes();
    WriteForgotten();
    WriteSettings();
    Exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  const bool forgot = !forgotten_.empty();
  pending_.clear();
  outcomes_.clear();
  forgotten_.clear();
  // The pages of forgotten jobs go back to the filesystem (at the next checkpoint). A failure
  // here loses nothing: the pages stay free inside the file for the next jobs.
  if (forgot) sqlite3_exec(db_, "PRAGMA incremental_vacuum", nullptr, nullptr, nullptr);
  limits_.clear();
  keys_.clear();
  allocs_.clear();
}

// The jobs submitted since the last commit, and their events (leases, retries, cancels).
void SqliteJournal::WriteJobs() {
  Statement insert_job(db_,
                       "INSERT OR REPLACE INTO jobs(job, submitted, size, context)"
                       " VALUES(?,?,?,?)");
  Statement insert_specs(db_, "INSERT OR REPLACE INTO specs(job, part, body) VALUES(?,?,?)");
  Statement insert_event(db_, "INSERT INTO events(job, kind, body) VALUES(?,?,?)");
  const double now = WallNow();
  for (auto& [job, p] : pending_) {
    const auto j = static_cast<int64_t>(job);
    if (p.added) {
      insert_job.Bind(1, j).Bind(2, now).Bind(3, int64_t{p.size}).Bind(4, p.context).Run();
      for (size_t w = 0; w < p.windows.size(); ++w)
        insert_specs.Bind(1, j).Bind(2, static_cast<int64_t>(w)).Bind(3, p.windows[w]).Run();
    }
    if (!p.leases.empty()) {
      std::vector<PackedLease> packed;
      packed.reserve(p.leases.size());
      for (const Lease& l : p.leases) packed.push_back({l.id.index, l.attempt});
      std::string body = Pack(packed);
      insert_event.Bind(1, j).Bind(2, int64_t{kLeases}).Bind(3, body).Run();
    }
    if (!p.retries.empty()) {
      nlohmann::json retries = nlohmann::json::array();
      for (const auto& r : p.retries) retries.push_back({r.index, r.due, r.error});
      std::string body = retries.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      insert_event.Bind(1, j).Bind(2, int64_t{kRetries}).Bind(3, body).Run();
    }
    if (!p.cancels.empty()) {
      std::string body = Pack(p.cancels);
      insert_event.Bind(1, j).Bind(2, int64_t{kCancels}).Bind(3, body).Run();
    }
  }
}

// The outcomes recorded since the last commit.
void SqliteJournal::WriteOutcomes() {
  if (!outcomes_.empty()) {
    Statement insert_outcome(
        db_, "INSERT OR REPLACE INTO outcomes(job, idx, status, body) VALUES(?,?,?,?)");
    // In key order: the rows go on at the end of the table's B-tree instead of splitting
    // pages all over it.
    std::vector<const std::pair<const TaskId, PendingOutcome>*> rows;
    rows.reserve(outcomes_.size());
    for (const auto& row : outcomes_) rows.push_back(&row);
    std::sort(rows.begin(), rows.end(), [](const auto* a, const auto* b) {
      return std::tie(a->first.job, a->first.index) < std::tie(b->first.job, b->first.index);
    });
    for (const auto* row : rows) {
      const auto& [id, outcome] = *row;
      insert_outcome.Bind(1, static_cast<int64_t>(id.job))
          .Bind(2, int64_t{id.index})
          .Bind(3, static_cast<int64_t>(outcome.status))
          .Bind(4, outcome.body)
          .Run();
    }
  }
}

// The jobs forgotten since the last commit, with everything of theirs.
void SqliteJournal::WriteForgotten() {
  if (!forgotten_.empty()) {
    Statement forget_job(db_, "DELETE FROM jobs WHERE job=?");
    Statement forget_specs(db_, "DELETE FROM specs WHERE job=?");
    Statement forget_events(db_, "DELETE FROM events WHERE job=?");
    Statement forget_keys(db_, "DELETE FROM keys WHERE job=?");
    Statement forget_outcomes(db_, "DELETE FROM outcomes WHERE job=?");
    for (uint64_t job : forgotten_) {
      forget_job.Bind(1, static_cast<int64_t>(job)).Run();
      forget_specs.Bind(1, static_cast<int64_t>(job)).Run();
      forget_events.Bind(1, static_cast<int64_t>(job)).Run();
      forget_keys.Bind(1, static_cast<int64_t>(job)).Run();
      forget_outcomes.Bind(1, static_cast<int64_t>(job)).Run();
    }
  }
}

// Idempotency keys, limits and allocation queues set or removed since the last commit.
void SqliteJournal::WriteSettings() {
  if (!keys_.empty()) {
    Statement insert_key(db_, "INSERT OR REPLACE INTO keys(key, job) VALUES(?,?)");
    for (const auto& [job, key] : keys_)
      insert_key.Bind(1, key).Bind(2, static_cast<int64_t>(job)).Run();
  }
  if (!limits_.empty()) {
    Statement set(db_, "INSERT OR REPLACE INTO limits(name, max, rate, burst) VALUES(?,?,?,?)");
    Statement remove(db_, "DELETE FROM limits WHERE name=?");
    for (const auto& [limit, removed] : limits_) {
      if (removed) {
        remove.Bind(1, limit.name).Run();
      } else {
        set.Bind(1, limit.name)
            .Bind(2, int64_t{limit.max})
            .Bind(3, limit.rate)
            .Bind(4, int64_t{limit.burst})
            .Run();
      }
    }
  }
  if (!allocs_.empty()) {
    Statement set(db_, "INSERT OR REPLACE INTO allocs(name, body) VALUES(?,?)");
    Statement remove(db_, "DELETE FROM allocs WHERE name=?");
    for (const auto& [name, body] : allocs_) {
      if (body)
        set.Bind(1, name).Bind(2, *body).Run();
      else
        remove.Bind(1, name).Run();
    }
  }
}

Expected<void> SqliteJournal::Commit() {
  try {
    CommitOrThrow();
    return {};
  } catch (const std::exception& e) {
    return Error{ErrorCode::kDiskFull, e.what()};
  }
}

size_t SqliteJournal::FindRange(uint64_t job, uint32_t first, uint32_t count,
                                std::vector<std::optional<TaskOutcome>>& into, size_t max_bytes) {
  const size_t base = into.size();
  into.resize(base + count);
  if (!find_range_ && sqlite3_prepare_v2(db_,
                                         "SELECT idx, body FROM outcomes WHERE job=? AND idx>=? AND"
                                         " idx<? ORDER BY idx",
                                         -1, &find_range_, nullptr) != SQLITE_OK)
    throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db_));
  sqlite3_bind_int64(find_range_, 1, static_cast<int64_t>(job));
  sqlite3_bind_int64(find_range_, 2, first);
  sqlite3_bind_int64(find_range_, 3, int64_t{first} + count);
  // Row by row, so that no more than about max_bytes of outcomes are ever decoded at once.
  uint32_t end = count;
  size_t bytes = 0;
  int rc;
  while ((rc = sqlite3_step(find_range_)) == SQLITE_ROW) {
    const auto index = static_cast<uint64_t>(sqlite3_column_int64(find_range_, 0));
    const void* p = sqlite3_column_blob(find_range_, 1);
    auto outcome = DecodeOutcome(
        {static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(find_range_, 1))});
    if (!outcome) {
      sqlite3_reset(find_range_);
      throw std::runtime_error("journal: an outcome of job " + std::to_string(job) + " is corrupt");
    }
    if (index < first || index - first >= count) continue;
    bytes += ApproxWireBytes(*outcome);
    into[base + (index - first)] = std::move(outcome);
    if (bytes > max_bytes) {
      end = static_cast<uint32_t>(index - first + 1);
      break;
    }
  }
  sqlite3_reset(find_range_);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw std::runtime_error(std::string("journal: ") + sqlite3_errmsg(db_));
  into.resize(base + end);
  if (outcomes_.empty()) return end;
  // Those recorded this turn, not committed yet, fill the gaps; then the budget is applied again
  // in order.
  bytes = 0;
  for (uint32_t i = 0; i < end; ++i) {
    auto& slot = into[base + i];
    if (!slot) {
      if (auto it = outcomes_.find({job, first + i}); it != outcomes_.end())
        slot = DecodeOutcome(it->second.body);
    }
    if (slot) bytes += ApproxWireBytes(*slot);
    if (bytes > max_bytes) {
      into.resize(base + i + 1);
      return i + 1;
    }
  }
  return end;
}

std::vector<RecoveredJob> SqliteJournal::Load() {
  std::unordered_map<uint64_t, size_t> where;  // job number -> its place in the list
  std::vector<RecoveredJob> jobs = LoadJobs(EndedJobs(), where);
  Statement select_keys(db_, "SELECT key, job FROM keys");
  while (select_keys.Next()) {
    auto it = where.find(static_cast<uint64_t>(select_keys.Int(1)));
    if (it != where.end()) jobs[it->second].key = std::string(select_keys.Blob(0));
  }
  ReplayEvents(jobs, where);
  LoadOutcomes(jobs);
  return jobs;
}

// Jobs whose every task has ended come back as counts (RecoveredJob::ended), not task by task:
// the outcomes' counts by job and status.
std::unordered_map<uint64_t, RecoveredJob::Ended> SqliteJournal::EndedJobs() {
  std::unordered_map<uint64_t, RecoveredJob::Ended> ended;
  {
    Statement counts(db_,
                     "SELECT job, status, count(*), min(idx) FROM outcomes GROUP BY job, status");
    while (counts.Next()) {
      const int64_t status = counts.Int(1);
      if (status < 0 || status >= 6)
        throw std::runtime_error("journal: an outcome of job " + std::to_string(counts.Int(0)) +
                                 " has an unknown status");
      auto& e = ended[static_cast<uint64_t>(counts.Int(0))];
      e.by_status[static_cast<size_t>(status)] = static_cast<uint32_t>(counts.Int(2));
      e.size += static_cast<uint32_t>(counts.Int(2));  // (the ended ones, for now)
      if (status != static_cast<int64_t>(TaskStatus::kOk))
        e.first_failed = std::min(e.first_failed, static_cast<uint32_t>(counts.Int(3)));
    }
  }
  return ended;
}

// Every job with its specs (only the first, for its label, when every task ended).
std::vector<RecoveredJob> SqliteJournal::LoadJobs(
    std::unordered_map<uint64_t, RecoveredJob::Ended> ended,
    std::unordered_map<uint64_t, size_t>& where) {
  std::vector<RecoveredJob> jobs;
  Statement select_jobs(db_, "SELECT job, submitted, size, context FROM jobs ORDER BY job");
  Statement select_specs(db_, "SELECT part, body FROM specs WHERE job=? ORDER BY part");
  while (select_jobs.Next()) {
    RecoveredJob job;
    job.job = static_cast<uint64_t>(select_jobs.Int(0));
    job.submitted = select_jobs.Real(1);
    const auto size = static_cast<uint64_t>(select_jobs.Int(2));
    auto context = DecodeContext(select_jobs.Blob(3));
    const auto corrupt = [&] {
      return std::runtime_error("journal: the specs of job " + std::to_string(job.job) +
                                " are corrupt");
    };
    if (!context || size > kMaxTasksPerJob) throw corrupt();
    job.context = std::move(*context);
    // Its specs: the first alone (for its label) when every task ended, else every one.
    const bool ended_all = size > 0 && ended.count(job.job) && ended[job.job].size == size;
    select_specs.Bind(1, static_cast<int64_t>(job.job));
    if (!ended_all) job.tasks.reserve(size);
    uint32_t expected_part = 0;
    while (select_specs.Next()) {
      if (select_specs.Int(0) != expected_part++) throw corrupt();
      if (ended_all) {
        auto first = DecodeFirstSpec(select_specs.Blob(1));
        if (!first || first->first == 0) throw corrupt();
        job.ended = std::move(ended[job.job]);
        job.ended->first = std::move(first->second);
        break;
      }
      auto specs = DecodeSpecs(select_specs.Blob(1));
      if (!specs || job.tasks.size() + specs->size() > size) throw corrupt();
      for (TaskSpec& spec : *specs) job.tasks.push_back({.spec = std::move(spec)});
    }
    select_specs.Reset();
    if (ended_all ? !job.ended : job.tasks.size() != size) throw corrupt();
    where[job.job] = jobs.size();
    jobs.push_back(std::move(job));
  }
  return jobs;
}

// The events since each job's submission: leases, retries and cancel requests, in order.
void SqliteJournal::ReplayEvents(std::vector<RecoveredJob>& jobs,
                                 const std::unordered_map<uint64_t, size_t>& where) {
  Statement select_events(db_, "SELECT job, kind, body FROM events ORDER BY seq");
  while (select_events.Next()) {
    auto it = where.find(static_cast<uint64_t>(select_events.Int(0)));
    if (it == where.end()) continue;
    auto& tasks = jobs[it->second].tasks;
    auto task = [&](uint32_t index) -> RecoveredTask* {
      return index < tasks.size() ? &tasks[index] : nullptr;
    };
    std::string_view body = select_events.Blob(2);
    switch (select_events.Int(1)) {
      case kLeases:
        for (const PackedLease& l : Unpack<PackedLease>(body)) {
          if (auto* t = task(l.index)) {
            t->attempts = std::max(t->attempts, l.attempt);
            t->retry_due = 0;
          }
        }
        break;
      case kRetries: {
        auto retries = nlohmann::json::parse(body, nullptr, false);
        if (!retries.is_array()) break;
        for (const auto& r : retries) {
          if (auto* t = task(r[0].get<uint32_t>())) {
            ++t->failures;
            t->retry_due = r[1].get<double>();
            t->last_error = r[2].get<std::string>();
          }
        }
        break;
      }
      case kCancels:
        for (uint32_t index : Unpack<uint32_t>(body)) {
          if (auto* t = task(index)) t->cancel_requested = true;
        }
        break;
    }
  }
}

// The outcomes of the jobs still running.
void SqliteJournal::LoadOutcomes(std::vector<RecoveredJob>& jobs) {
  Statement select_outcomes(db_, "SELECT idx, body FROM outcomes WHERE job=? ORDER BY idx");
  for (RecoveredJob& job : jobs) {
    if (job.ended) continue;  // every task ended: its outcomes stay on disk
    select_outcomes.Bind(1, static_cast<int64_t>(job.job));
    auto& tasks = job.tasks;
    while (select_outcomes.Next()) {
      const auto index = static_cast<uint64_t>(select_outcomes.Int(0));
      auto outcome = DecodeOutcome(select_outcomes.Blob(1));
      if (!outcome)
        throw std::runtime_error("journal: an outcome of job " + std::to_string(job.job) +
                                 " is corrupt");
      if (index < tasks.size()) tasks[index].outcome = std::move(*outcome);
    }
    select_outcomes.Reset();
  }
}

}  // namespace orq
