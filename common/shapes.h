// The JSON shapes of what the broker reports. `--json` output, the dashboard's /api/v1 and
// `orq events --json` print the same objects, made here, so a script written against one reads
// the others. Ids as people write them ("j7.2"), times in seconds.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/protocol.h"

namespace orq {

// A task's result as JSON: a shell task's stdout, else its result's JSON (null: none).
nlohmann::json ResultJson(const TaskOutcome& outcome);
// `orq gather --json`: one object per task.
nlohmann::json ToJson(const TaskOutcome& outcome);
// `orq status --json`: {"broker": {"pid"}, "endpoint", "endpoints", "workers": [...], "tasks":
// {...}, "jobs", "counters": {...}, "limits", "locks", "journal_problem"}.
nlohmann::json StatusJson(StatusReply status);
// `orq jobs --json`, `orq status JOB --json`: one object per job, with an "eta" while it runs.
nlohmann::json JobJson(const JobInfo& job);
// A limit or a lock (orq limit list --json, orq status --json).
nlohmann::json LimitJson(const GateInfo& limit);
nlohmann::json LockJson(const GateInfo& lock);
// `orq events --json`: {"seq", "time", "event", ...the fields its kind has}. `wall_offset`
// turns the broker's monotonic clock into wall-clock time (the reader's now minus
// EventsReply::now): "time" is seconds since the epoch.
nlohmann::json EventJson(const Event& event, double wall_offset);
// The dashboard's job page: one task ({"id", "index", "state", "status", ...}).
nlohmann::json TaskRowJson(uint64_t job, const TaskRow& row);
// An allocation queue (orq alloc list --json, orq alloc info --json, orq status --json's
// "allocs"): its settings, state and counters, and its allocations with their history.
nlohmann::json AllocQueueJson(const AllocQueueInfo& queue);
// "queued", "running", "ended".
std::string_view AllocStateName(AllocState state);
// `json` as one line, always valid JSON: bytes that are not UTF-8 (from a task's output, or a
// peer) become U+FFFD rather than an exception.
std::string JsonLine(const nlohmann::json& json);

}  // namespace orq
