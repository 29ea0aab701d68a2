#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>

namespace orq {
namespace {

std::string Duration(double seconds) {
  const auto s = static_cast<uint64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%llu:%02llu:%02llu", static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s / 60 % 60),
                  static_cast<unsigned long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llu:%02llu", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  return buf;
}

size_t TerminalWidth(std::FILE* out) {
  winsize ws{};
  if (::ioctl(::fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

}  // namespace

std::string FormatProgress(const ProgressState& s, size_t width) {
  const uint64_t done = s.ok + s.failed;
  char counts[160];
  std::snprintf(counts, sizeof counts, "%llu/%llu ok %llu failed %llu running %llu",
                static_cast<unsigned long long>(done), static_cast<unsigned long long>(s.total),
                static_cast<unsigned long long>(s.ok), static_cast<unsigned long long>(s.failed),
                static_cast<unsigned long long>(s.running));
  std::string text = counts;
  if (s.elapsed > 0 && done > 0) {
    const double rate = static_cast<double>(done) / s.elapsed;
    char buf[64];
    std::snprintf(buf, sizeof buf, rate >= 100 ? " %.0f/s" : " %.1f/s", rate);
    text += buf;
    if (s.total > done) text += " ETA " + Duration(static_cast<double>(s.total - done) / rate);
  }
  // The bar takes what is left, 10 to 40 columns.
  const size_t room = width > text.size() + 3 ? width - text.size() - 3 : 0;
  if (room < 10 || s.total == 0) return text.size() <= width ? text : text.substr(0, width);
  const size_t bar = std::min<size_t>(room, 40);
  const size_t filled = static_cast<size_t>(static_cast<double>(bar) * static_cast<double>(done) /
                                            static_cast<double>(s.total));
  std::string line = "[";
  line.append(filled, '=');
  if (filled < bar) line += '>';
  if (filled + 1 < bar) line.append(bar - filled - 1, ' ');
  return line + "] " + text;
}

Progress::Progress(bool enabled, std::FILE* out) : enabled_(enabled), out_(out) {}

void Progress::Draw(const ProgressState& state, bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && shown_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const std::string line = "\r" + FormatProgress(state, TerminalWidth(out_) - 1) + "\x1b[K";
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
  shown_ = true;
}

void Progress::Clear() {
  if (!enabled_ || !shown_) return;
  std::fputs("\r\x1b[K", out_);
  std::fflush(out_);
  shown_ = false;
}

bool StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

}  // namespace orq
