// /metrics: the broker's status and metrics in Prometheus' text exposition format (version
// 0.0.4), named as Prometheus' conventions ask (orq_ prefix, base units, _total for counters).
// Pure: a StatusReply with its metrics in, the text out. The README lists every metric.
#pragma once

#include <string>

#include "common/protocol.h"

namespace orq::web {

// `status` must carry its metrics (StatusRequest::metrics).
std::string Exposition(const StatusReply& status);

}  // namespace orq::web
