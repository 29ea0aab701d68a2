#include "broker/core/followers.h"

#include <algorithm>
#include <iterator>
#include <utility>

namespace orq {

void Followers::Output(const OutputMessage& output) {
  auto it = followers_.find(output.id);
  if (it == followers_.end()) return;
  auto& list = it->second;
  for (auto f = list.begin(); f != list.end();) {
    LogChunk chunk{"", !f->follow, "", "", ""};
    if (f->attempt != output.attempt) {  // the task runs again: its output starts again
      if (f->offset > 0) chunk.note = "attempt " + std::to_string(output.attempt) + " started";
      f->attempt = output.attempt;
      f->offset = 0;
    }
    const std::string& text = f->err ? output.err : output.out;
    const uint64_t start = f->err ? output.err_offset : output.out_offset;
    if (f->offset >= start && f->offset < start + text.size()) {
      chunk.text = text.substr(f->offset - start);
      f->offset = start + text.size();
    }
    if (!chunk.text.empty() || !chunk.note.empty() || chunk.final)
      out_.Send({f->client, std::move(chunk)});
    f = f->follow ? std::next(f) : list.erase(f);
  }
  if (list.empty()) followers_.erase(it);
}

void Followers::End(TaskId id, const TaskOutcome& outcome) {
  auto it = followers_.find(id);
  if (it == followers_.end()) return;
  for (Follower& f : it->second) {
    const std::string& text = !outcome.shell ? outcome.result
                              : f.err        ? outcome.shell->stderr_text
                                             : outcome.shell->stdout_text;
    const uint64_t from =
        f.attempt == outcome.attempt ? std::min<uint64_t>(f.offset, text.size()) : 0;
    LogChunk last{text.substr(from), true, "", "", ""};
    if (outcome.shell && outcome.shell->more) {
      const auto& more = *outcome.shell->more;
      last.file = f.err ? more.stderr_file : more.stdout_file;
      if (!last.file.empty()) last.host = more.host;
      last.attempt = outcome.attempt;
    }
    out_.Send({f.client, std::move(last)});
  }
  followers_.erase(it);
}

void Followers::ClientGone(const std::string& client) {
  for (auto it = followers_.begin(); it != followers_.end();) {
    std::erase_if(it->second, [&](const Follower& f) { return f.client == client; });
    it = it->second.empty() ? followers_.erase(it) : std::next(it);
  }
}

}  // namespace orq
