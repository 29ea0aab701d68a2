#include "tests/checker.h"

#include <map>
#include <sstream>

namespace orq::testing {

std::string CheckReport::Describe() const {
  std::ostringstream out;
  auto list = [&](const char* what, const std::vector<std::string>& ids) {
    if (ids.empty()) return;
    out << ids.size() << " " << what << ":";
    for (size_t i = 0; i < ids.size() && i < 10; ++i) out << " " << ids[i];
    out << "\n";
  };
  list("lost", lost);
  list("duplicated", duplicated);
  list("unexpected", unexpected);
  list("out of order", out_of_order);
  list("wrong", wrong);
  return out.str();
}

CheckReport CheckResults(const std::string& job, const std::vector<nlohmann::json>& expected,
                         const std::string& output, const std::string& expected_status) {
  CheckReport report;
  std::map<std::string, int> seen;
  std::istringstream in(output);
  size_t position = 0;
  for (std::string line; std::getline(in, line);) {
    auto row = nlohmann::json::parse(line, nullptr, false);
    std::string id = row.is_object() ? row.value("id", "") : "";
    const std::string prefix = job + ".";
    size_t index = 0;
    bool ours = id.rfind(prefix, 0) == 0;
    if (ours) {
      index = std::stoul(id.substr(prefix.size()));
      ours = index < expected.size();
    }
    if (!ours) {
      report.unexpected.push_back(id.empty() ? line : id);
      continue;
    }
    if (++seen[id] > 1) report.duplicated.push_back(id);
    if (index != position) report.out_of_order.push_back(id);
    ++position;
    if (row["status"] != expected_status ||
        (expected_status == "ok" && row["result"] != expected[index]))
      report.wrong.push_back(id + " (" + row["status"].dump() + " " + row["result"].dump() + ")");
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    const std::string id = job + "." + std::to_string(i);
    if (!seen.count(id)) report.lost.push_back(id);
  }
  return report;
}

}  // namespace orq::testing
