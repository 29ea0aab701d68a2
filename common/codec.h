// The codec: typed messages (common/protocol.h) to frames and back. No zmq here, so it is tested
// and fuzzed on plain bytes. Decode never trusts its input: a short, long or inconsistent body is a
// kBadRequest Error, never a crash or an unbounded allocation.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "common/error.h"
#include "common/protocol.h"

namespace orq {

struct EncodedMessage {
  Command command;
  std::string body;
};

EncodedMessage Encode(const Message& message);

// The same encoding for the journal's blobs (broker/sqlite_journal.h).
std::string EncodeSpecs(std::span<const TaskSpec> specs);
std::optional<std::vector<TaskSpec>> DecodeSpecs(std::string_view bytes);
// The number of specs in such a blob and the first of them, without decoding the rest.
std::optional<std::pair<size_t, TaskSpec>> DecodeFirstSpec(std::string_view bytes);
std::string EncodeOutcome(const TaskOutcome& outcome);
std::optional<TaskOutcome> DecodeOutcome(std::string_view bytes);
std::string EncodeContext(const JobContext& context);
std::optional<JobContext> DecodeContext(std::string_view bytes);
// An allocation queue as the journal keeps it (orq alloc).
std::string EncodeAllocQueue(const AllocQueueInfo& queue);
std::optional<AllocQueueInfo> DecodeAllocQueue(std::string_view bytes);

// About what a spec or an outcome takes in a message, never much less (its strings and a little
// per field), without encoding it: for cutting a job, a worker's results or a gather's replies
// into messages of about a size (kSubmitPartBytes, kResultBatchBytes, kResultsReplyBytes).
size_t ApproxWireBytes(const TaskSpec& spec);
size_t ApproxWireBytes(const TaskOutcome& outcome);

// Decodes the three frames of a message (version, command byte, body).
// A frame that does not decode is an Error (kBadRequest) saying why.
Expected<Message> Decode(std::string_view version, std::string_view command, std::string_view body);

}  // namespace orq
