#include "common/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace orq {
namespace {
std::string component = "orq";
}

void SetLogComponent(std::string_view name) { component = name; }

void Log(std::string_view message) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03d %s[%d] %.*s\n", stamp, static_cast<int>(ms), component.c_str(),
               static_cast<int>(::getpid()), static_cast<int>(message.size()), message.data());
}

}  // namespace orq
