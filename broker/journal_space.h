// The disk under the broker's journal: how much of it is free, and a reserve file that holds some
// back for the moment it fills. The broker shell (broker/broker.cc) removes the reserve when a
// commit fails, so that turn's commit fits and no reply already decided waits; then it refuses new
// work until the disk has room for the reserve again (as RabbitMQ's disk alarm blocks publishers).
#pragma once

#include <sys/statvfs.h>

#include <cstdint>
#include <optional>
#include <string>

namespace orq {

class JournalSpace {
 public:
  // For the journal at `journal_path`; the reserve is `journal_path`.reserve, made by Reserve().
  explicit JournalSpace(const std::string& journal_path);
  // Bytes free to an unprivileged writer on the journal's filesystem; UINT64_MAX when unknown.
  uint64_t FreeBytes() const;
  // Makes the reserve file (32 MiB, or an eighth of a smaller filesystem) if it is not there.
  // False when the disk has no room for it.
  bool Reserve();
  // Removes the reserve file; false when there was none.
  bool Release();
  bool reserved() const { return reserved_; }
  uint64_t reserve_bytes() const { return reserve_bytes_; }

 private:
  std::optional<struct statvfs> Stat() const;  // of the journal's filesystem; nullopt: unknown

  std::string directory_;  // the journal's
  std::string reserve_path_;
  uint64_t reserve_bytes_ = 0;  // set by the first Reserve()
  bool reserved_ = false;       // the reserve file exists at its full size
};

}  // namespace orq
