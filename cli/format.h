// How outcomes are shown: the text form (one line per task) and the JSON form (one object per
// line) of `orq gather` and `orq run`.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/protocol.h"

namespace orq {

// The text form. A shell task's stdout exactly as it wrote it, nothing added (as GNU parallel
// prints it: a task that printed nothing prints nothing, a last line without a newline stays so).
// Any other task's result as a line: a string as is, other JSON as JSON; a non-ok one as an empty
// line. With a tag (--tag), each line is "TAG<tab>line" (a shell task's last line as it ended).
void PrintText(const TaskOutcome& outcome, std::FILE* out, std::string_view tag = "");
nlohmann::json ToJson(const TaskOutcome& outcome);
// "orq: task j1.2 failed: exit code 1" for a task that did not end ok.
std::string FailureSentence(const TaskOutcome& outcome);

// `orq status --json`: {"broker": {"pid"}, "endpoint", "endpoints", "workers": [...], "tasks":
// {...}, "jobs", "counters": {...}}.
nlohmann::json StatusJson(StatusReply status);
// `json` as one line, always valid JSON: bytes that are not UTF-8 (from a task's output, or a
// peer) become U+FFFD rather than an exception.
std::string JsonLine(const nlohmann::json& json);
// `orq status`: a few lines for people.
void PrintStatus(StatusReply status, std::FILE* out);

// A limit or a lock (orq limit list, orq status): a line for people, an object for --json.
std::string LimitLine(const GateInfo& limit);
nlohmann::json LimitJson(const GateInfo& limit);
std::string LockLine(const GateInfo& lock);
nlohmann::json LockJson(const GateInfo& lock);

}  // namespace orq
