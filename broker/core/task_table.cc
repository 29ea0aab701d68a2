#include "broker/core/task_table.h"

#include <algorithm>

#include "common/ids.h"

namespace orq {

std::string Label(const TaskSpec& spec) {
  std::string label;
  if (const auto* shell = std::get_if<ShellTask>(&spec.body)) {
    if (const std::string* line = ShellCommand(shell->argv)) {
      label = *line;
    } else {
      for (const std::string& word : shell->argv) label += (label.empty() ? "" : " ") + word;
    }
  } else if (const auto* python = std::get_if<PythonTask>(&spec.body)) {
    label = python->function().name.empty() ? "python" : python->function().name + "()";
  } else {
    label = KindName(spec);
  }
  constexpr size_t kMax = 120;
  if (label.size() > kMax) label = label.substr(0, kMax - 3) + "...";
  return label;
}

namespace {

Error Unknown(std::string sentence) { return {ErrorCode::kUnknownId, std::move(sentence)}; }

}  // namespace

void ShareContext(bool remote, JobRecord& job, Assignment& a) {
  const JobContext& context = *job.context;
  const auto travels = [&](const std::string& entry) {
    const std::string name = entry.substr(0, entry.find('='));
    return std::find(context.named->begin(), context.named->end(), name) != context.named->end();
  };
  if (!remote || !context.named || !context.env ||
      std::all_of(context.env->begin(), context.env->end(), travels)) {
    a.context = job.context;  // a local worker, --env-all, or nothing but named variables
    return;
  }
  // A remote worker: its own environment, with only the variables the submitter named on top.
  if (!job.remote_context) {
    job.remote_context = std::make_shared<const JobContext>(JobContext{context.cwd, {}, {}});
    for (const std::string& entry : *context.env) {
      if (travels(entry)) job.remote_env.push_back(entry);
    }
  }
  a.context = job.remote_context;
  a.env = job.remote_env;
}

uint64_t TaskTable::Add(uint32_t size, const TaskSpec* first,
                        std::shared_ptr<const JobContext> context, SteadyTime submitted_at,
                        std::string key, uint64_t number) {
  if (number == 0) number = next_job_;
  next_job_ = std::max(next_job_, number + 1);
  JobRecord& job = jobs_[number];
  job.context = std::move(context);
  job.submitted_at = submitted_at;
  if (first) job.label = Label(*first);
  if (!key.empty()) keys_[key] = number;
  job.key = std::move(key);
  job.tasks.resize(size);
  job.size = size;
  job.unfinished = job.size;
  by_state_[static_cast<size_t>(TaskState::kQueued)] += job.size;
  if (job.size == 0) {  // (a journal's job with no task: ended from the start)
    job.finished_at = submitted_at;
    finished_order_.push_back(number);
  }
  return number;
}

void TaskTable::AddEnded(uint64_t number, std::shared_ptr<const JobContext> context,
                         SteadyTime submitted_at, std::string key, const RecoveredJob::Ended& ended,
                         SteadyTime now) {
  next_job_ = std::max(next_job_, number + 1);
  JobRecord& job = jobs_[number];
  job.context = std::move(context);
  job.submitted_at = submitted_at;
  if (!key.empty()) keys_[key] = number;
  job.key = std::move(key);
  job.label = Label(ended.first);
  job.size = ended.size;
  job.ended = ended.by_status;
  job.ok = ended.by_status[static_cast<size_t>(TaskStatus::kOk)];
  job.failed = ended.size - job.ok;
  job.first_failed = ended.first_failed;
  job.spilled = true;  // not known without reading every outcome: looked for when forgotten
  job.finished_at = now;
  finished_order_.push_back(number);
  for (size_t s = 0; s < ended.by_status.size(); ++s) by_status_[s] += ended.by_status[s];
}

TaskRecord* TaskTable::Find(TaskId id) {
  auto it = jobs_.find(id.job);
  if (it == jobs_.end() || id.index >= it->second.size) return nullptr;
  if (it->second.tasks.empty()) {  // compacted: every task of it has ended
    compacted_task_ = TaskRecord{.data = TaskRecord::Finished{}};
    return &compacted_task_;
  }
  return &it->second.tasks[id.index];
}

JobRecord* TaskTable::FindJob(uint64_t number) {
  auto it = jobs_.find(number);
  return it == jobs_.end() ? nullptr : &it->second;
}

const JobRecord* TaskTable::FindJob(uint64_t number) const {
  auto it = jobs_.find(number);
  return it == jobs_.end() ? nullptr : &it->second;
}

std::optional<uint64_t> TaskTable::JobOfKey(const std::string& key) const {
  auto it = keys_.find(key);
  if (key.empty() || it == keys_.end()) return std::nullopt;
  return it->second;
}

void TaskTable::Move(TaskRecord& task, TaskRecord::Data to) {
  --by_state_[task.data.index()];
  ++by_state_[to.index()];
  task.data = to;
}

JobRecord& TaskTable::Finish(TaskId id, TaskRecord& task, TaskStatus status, SteadyTime now) {
  --by_state_[task.data.index()];  // (a finished task is counted by its status)
  task.data = TaskRecord::Finished{status};
  ++by_status_[static_cast<size_t>(status)];
  JobRecord& job = jobs_.at(id.job);
  const bool ok = status == TaskStatus::kOk;
  ++(ok ? job.ok : job.failed);
  ++job.ended[static_cast<size_t>(status)];
  if (!ok && job.first_failed == UINT32_MAX) job.first_failed = id.index;
  if (--job.unfinished > 0) return job;
  job.finished_at = now;
  finished_order_.push_back(id.job);
  ended_.push_back(id.job);
  return job;
}

Expected<std::vector<TaskId>> TaskTable::Resolve(const std::vector<IdRef>& ids,
                                                 Delivery::Request* waiter) const {
  if (ids.empty()) return Unknown("no job or task id given");
  std::vector<TaskId> tasks;
  for (const IdRef& ref : ids) {
    const JobRecord* job = FindJob(ref.job);
    if (!job) return Unknown("unknown job " + FormatJobId(ref.job));
    const uint32_t size = job->size;
    if (ref.index) {
      if (*ref.index >= size)
        return Unknown("unknown task " + FormatId(ref) + ": job " + FormatJobId(ref.job) + " has " +
                       std::to_string(size) + " task" + (size == 1 ? "" : "s"));
      tasks.push_back({ref.job, *ref.index});
      if (waiter) ++waiter->single_tasks[{ref.job, *ref.index}];
    } else {
      if (waiter) ++waiter->whole_jobs[ref.job];
      for (uint32_t i = 0; i < size; ++i) tasks.push_back({ref.job, i});
    }
  }
  return tasks;
}

Expected<TaskId> TaskTable::ResolveTask(TaskId id) const {
  if (!Find(id)) return Unknown("unknown task " + FormatTaskId(id));
  return id;
}

Expected<std::vector<uint64_t>> TaskTable::ResolveJobs(std::vector<uint64_t> jobs) const {
  for (uint64_t number : jobs) {
    if (!jobs_.count(number)) return Unknown("unknown job " + FormatJobId(number));
  }
  return jobs;
}

void TaskTable::Compact() {
  for (uint64_t number : ended_) {
    auto it = jobs_.find(number);
    if (it == jobs_.end() || it->second.unfinished > 0) continue;  // forgotten, or retried
    std::vector<TaskRecord>().swap(it->second.tasks);
  }
  ended_.clear();
}

std::optional<uint64_t> TaskTable::OldestFinished() {
  while (!finished_order_.empty() && !jobs_.count(finished_order_.front()))
    finished_order_.pop_front();  // forgotten meanwhile (orq forget)
  if (finished_order_.empty()) return std::nullopt;
  return finished_order_.front();
}

JobRecord TaskTable::Remove(uint64_t number) {
  auto it = jobs_.find(number);
  JobRecord job = std::move(it->second);
  jobs_.erase(it);
  for (size_t s = 0; s < job.ended.size(); ++s) by_status_[s] -= job.ended[s];
  if (!job.key.empty()) keys_.erase(job.key);  // the key may be used again
  return job;
}

uint64_t TaskTable::finished_total() const {
  uint64_t total = 0;
  for (uint64_t n : by_status_) total += n;
  return total;
}

}  // namespace orq
