// One-line log records on stderr: "2026-11-24T20:54:14.123 broker[123] message".
#pragma once

#include <string_view>

namespace orq {

// Names this process in log lines ("broker", "worker").
void SetLogComponent(std::string_view component);
void Log(std::string_view message);

}  // namespace orq
