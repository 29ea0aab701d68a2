// How outcomes are shown: the text form (one line per task) and the JSON form (one object per
// line) of `orq gather` and `orq run`.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/protocol.h"
#include "common/shapes.h"

namespace orq {

// The text form. A shell task's stdout exactly as it wrote it, nothing added (as GNU parallel
// prints it: a task that printed nothing prints nothing, a last line without a newline stays so).
// Any other task's result as a line: a string as is, other JSON as JSON; a non-ok one as an empty
// line. With a tag (--tag), each line is "TAG<tab>line" (a shell task's last line as it ended).
void PrintText(const TaskOutcome& outcome, std::FILE* out, std::string_view tag = "");
// "orq: task j1.2 failed: exit code 1" for a task that did not end ok.
std::string FailureSentence(const TaskOutcome& outcome);

// `orq status`: a few lines for people.
void PrintStatus(StatusReply status, std::FILE* out);

// An allocation queue (orq alloc list, orq status): a line for people.
std::string AllocQueueLine(const AllocQueueInfo& queue);
// A limit or a lock (orq limit list, orq status): a line for people (JSON: common/shapes.h).
std::string LimitLine(const GateInfo& limit);
std::string LockLine(const GateInfo& lock);

}  // namespace orq
