// README.md and docs/*.md against the tree and the orq binary: every relative link names a file
// (and a heading) that exists, and every orq command line in their shell blocks names a verb orq
// has, with options its `--help` lists. The README's "Three ways in" are run as written by
// tests/programs.sh; the other commands are not run here (many need other hosts, Slurm or a
// browser: the tests named in each document run those).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "tests/harness.h"

namespace orq::testing {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> Documents() {
  std::vector<fs::path> docs = {fs::path(ORQ_SOURCE_DIR) / "README.md"};
  for (const auto& entry : fs::directory_iterator(fs::path(ORQ_SOURCE_DIR) / "docs"))
    if (entry.path().extension() == ".md") docs.push_back(entry.path());
  return docs;
}

// GitHub's anchor for a heading: lower case, spaces to dashes, other punctuation dropped.
std::string Anchor(const std::string& heading) {
  std::string anchor;
  for (unsigned char c : heading) {
    if (std::isalnum(c) || c == '-' || c == '_')
      anchor += static_cast<char>(std::tolower(c));
    else if (c == ' ')
      anchor += '-';
    else if (c >= 0x80)
      anchor += static_cast<char>(c);
  }
  return anchor;
}

std::set<std::string> Anchors(const std::string& text) {
  std::set<std::string> anchors;
  bool code = false;
  for (const std::string& line : Lines(text)) {
    if (line.rfind("```", 0) == 0) code = !code;
    if (code || line.rfind('#', 0) != 0) continue;
    anchors.insert(Anchor(line.substr(line.find_first_not_of('#') + 1)));
  }
  return anchors;
}

TEST(DocsTest, EveryRelativeLinkNamesAFileAndHeadingThatExist) {
  const std::regex link(R"(\]\(([^)\s]+)\))");
  int checked = 0;
  for (const fs::path& doc : Documents()) {
    const std::string text = ReadFile(doc.string());
    for (auto it = std::sregex_iterator(text.begin(), text.end(), link);
         it != std::sregex_iterator(); ++it) {
      const std::string target = (*it)[1];
      if (target.find("://") != std::string::npos || target.rfind("mailto:", 0) == 0) continue;
      const size_t hash = target.find('#');
      const std::string file = target.substr(0, hash);
      const fs::path path = file.empty() ? doc : doc.parent_path() / file;
      ++checked;
      ASSERT_TRUE(fs::exists(path))
          << doc.filename() << " links to " << target << ", which does not exist";
      if (hash == std::string::npos || path.extension() != ".md") continue;
      EXPECT_EQ(Anchors(ReadFile(path.string())).count(target.substr(hash + 1)), 1u)
          << doc.filename() << " links to " << target << ": no such heading";
    }
  }
  EXPECT_GT(checked, 20) << "the documents lost their links";
}

// `orq VERB --help` (and `orq VERB SUB --help` for verbs with subcommands), once each.
class Help {
 public:
  // The options (-x and --long) that `words` (a verb, perhaps a subcommand) take, with the
  // number of verb words used; empty when the verb is not orq's.
  std::pair<std::set<std::string>, size_t> Options(const std::vector<std::string>& words) {
    if (words.empty()) return {};
    std::string out = Text({words[0]});
    if (out.empty()) return {};
    size_t used = 1;
    if (out.find("Subcommands:") != std::string::npos && words.size() > 1 &&
        words[1].rfind('-', 0) != 0) {
      std::string sub = Text({words[0], words[1]});
      if (!sub.empty()) {
        out = sub;
        used = 2;
      }
    }
    std::set<std::string> options = Global();
    const std::regex option(R"((^|[\s,])(--?[A-Za-z][A-Za-z0-9-]*))");
    for (const std::string& line : Lines(out)) {
      // An option's line starts "-x,--long" after its indent (deeper in an option group).
      const size_t start = line.find_first_not_of(' ');
      if (start == std::string::npos || line[start] != '-') continue;
      const std::string names = line.substr(start, line.find("  ", start) - start);
      for (auto it = std::sregex_iterator(names.begin(), names.end(), option);
           it != std::sregex_iterator(); ++it)
        options.insert((*it)[2]);
    }
    return {options, used};
  }

 private:
  std::string Text(const std::vector<std::string>& verb) {
    auto [it, fresh] = cache_.try_emplace(verb);
    if (fresh) {
      std::string out;
      std::vector<std::string> argv = {ORQ_BINARY};
      argv.insert(argv.end(), verb.begin(), verb.end());
      argv.push_back("--help");
      if (RunProgram(argv, out) == 0 && out.find("Usage: orq " + verb[0]) != std::string::npos)
        it->second = out;
    }
    return it->second;
  }
  std::set<std::string> Global() {
    std::set<std::string> options;
    std::string out;
    RunProgram({ORQ_BINARY, "--help"}, out);
    for (const std::string& line : Lines(out)) {
      if (line.rfind("  -", 0) != 0) continue;
      std::istringstream words(line);
      std::string names;
      words >> names;
      std::istringstream parts(names);
      for (std::string name; std::getline(parts, name, ',');) options.insert(name);
    }
    return options;
  }
  std::map<std::vector<std::string>, std::string> cache_;
};

TEST(DocsTest, EveryOrqCommandLineNamesAVerbAndOptionsOrqHas) {
  Help help;
  const std::regex command(R"((?:^|[\s;&|(`])(?:build/|\./)?orq\s+([^;&|)#`]*))");
  int checked = 0;
  for (const fs::path& doc : Documents()) {
    const std::vector<std::string> lines = Lines(ReadFile(doc.string()));
    bool shell = false, prompts = false;
    for (size_t number = 1; number <= lines.size(); ++number) {
      const std::string& line = lines[number - 1];
      if (line.rfind("```", 0) == 0) {
        shell = !shell && (line == "```sh" || line == "```bash" || line == "```console");
        // A block with "$ " prompts: only those lines are commands, the rest is their output.
        prompts = false;
        for (size_t j = number; shell && j < lines.size() && lines[j].rfind("```", 0) != 0; ++j)
          prompts = prompts || lines[j].rfind("$ ", 0) == 0;
        continue;
      }
      if (!shell || (prompts && line.rfind("$ ", 0) != 0)) continue;
      const std::string code = line.substr(0, line.find(" #"));  // not the comment
      for (auto it = std::sregex_iterator(code.begin(), code.end(), command);
           it != std::sregex_iterator(); ++it) {
        std::istringstream in((*it)[1].str());
        std::vector<std::string> words;
        for (std::string w; in >> w;) words.push_back(w);
        if (words.empty() || words[0].rfind('-', 0) == 0) continue;  // `orq --version` and such
        const std::string where = doc.filename().string() + ":" + std::to_string(number) + ": ";
        auto [options, used] = help.Options(words);
        ASSERT_FALSE(options.empty()) << where << "orq has no verb '" << words[0] << "': " << line;
        ++checked;
        // orq's options come first; its first other word (a value, a command) ends them, as
        // GNU parallel reads a command line.
        for (size_t i = used; i < words.size() && words[i].rfind('-', 0) == 0; ++i) {
          if (words[i] == "--" || words[i] == "-") break;
          const std::string name = words[i].substr(0, words[i].find('='));
          EXPECT_EQ(options.count(name), 1u)
              << where << "orq " << words[0] << " has no option " << name << ": " << line;
        }
      }
    }
  }
  EXPECT_GT(checked, 50) << "the documents lost their command lines";
}

}  // namespace
}  // namespace orq::testing
