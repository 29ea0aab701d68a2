// /metrics: the broker's status and metrics in Prometheus' text exposition format (version
// 0.0.4), named as Prometheus' conventions ask (orq_ prefix, base units, _total for counters).
// Pure: a StatusReply with its metrics in, the text out. docs/WATCHING.md lists every metric.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/protocol.h"

namespace orq::web {

// `status` must carry its metrics (StatusRequest::metrics).
std::string Exposition(const StatusReply& status);
// The dashboard's own: its requests refused, by reason.
std::string HttpExposition(const std::map<std::string, uint64_t>& refused);

}  // namespace orq::web
