// Checks a job's gathered results (gather --json lines) against what was submitted: every task
// exactly once, in order, ended as expected. Used by the fault tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace orq::testing {

struct CheckReport {
  std::vector<std::string> lost;        // submitted, no result line
  std::vector<std::string> duplicated;  // more than one result line
  std::vector<std::string> unexpected;  // a result for a task not submitted
  std::vector<std::string> out_of_order;
  std::vector<std::string> wrong;  // status or result not what the task should give
  bool ok() const {
    return lost.empty() && duplicated.empty() && unexpected.empty() && out_of_order.empty() &&
           wrong.empty();
  }
  std::string Describe() const;
};

// `expected` maps each task id ("j1.0", ...), in submission order, to its expected result.
CheckReport CheckResults(const std::string& job, const std::vector<nlohmann::json>& expected,
                         const std::string& gather_json_output,
                         const std::string& expected_status = "ok");

}  // namespace orq::testing
