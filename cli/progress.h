// The progress line of `orq run` and `orq gather` on stderr: done, failed, running, rate and ETA,
// redrawn in place ("\r" and erase-to-end-of-line). Shown when stderr is a terminal (or with
// --progress), never with --quiet. Format() is pure and tested; Progress draws.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace orq {

struct ProgressState {
  uint64_t total = 0;  // tasks in what is gathered (0: not known yet)
  uint64_t ok = 0, failed = 0;
  uint64_t running = 0;  // from the broker, now and then
  double elapsed = 0;    // seconds since the gather began
};

// One line of at most `width` columns: "[=====>    ] 45/100 ok 43 failed 2 running 4 12.3/s ETA
// 0:05". The bar is left out when the line would not fit.
std::string FormatProgress(const ProgressState& state, size_t width);

class Progress {
 public:
  // `enabled`: draw at all (a terminal, or --progress; not --quiet).
  explicit Progress(bool enabled, std::FILE* out = stderr);
  bool enabled() const { return enabled_; }
  // Redraws the line with `state`, at most every 100 ms unless `force`.
  void Draw(const ProgressState& state, bool force = false);
  // Erases the line (before results are printed, and at the end).
  void Clear();

 private:
  bool enabled_;
  std::FILE* out_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Whether progress is shown by default: stderr is a terminal.
bool StderrIsTerminal();

}  // namespace orq
