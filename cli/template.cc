#include "cli/template.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>
#include <tuple>

#include "common/errors.h"

namespace orq {
namespace {

// One replacement string found in a word: {N<op>} (source 0: every source; -N: the N-th from
// the last, GNU parallel's {-N}).
struct Token {
  enum Op { kWhole, kNoExtension, kBase, kDir, kBaseNoExtension, kSeq, kSlot };
  Op op = kWhole;
  long source = 0;
  size_t length = 0;  // of the token's text, braces included
};

// The replacement string starting at text[at] (a '{'), if it is one.
std::optional<Token> TokenAt(const std::string& text, size_t at) {
  size_t i = at + 1;
  Token t;
  if (text.compare(i, 2, "#}") == 0) return Token{Token::kSeq, 0, 3};
  if (text.compare(i, 2, "%}") == 0) return Token{Token::kSlot, 0, 3};
  const bool from_last = text.compare(i, 1, "-") == 0;
  if (from_last) ++i;
  size_t digits = 0;
  while (i + digits < text.size() && text[i + digits] >= '0' && text[i + digits] <= '9') ++digits;
  if (digits > 0) {
    if (digits > 6 || text[i] == '0') return std::nullopt;  // {0}, {0123}: not GNU parallel's
    t.source = std::stol(text.substr(i, digits));
    if (from_last) t.source = -t.source;
    i += digits;
  } else if (from_last) {
    return std::nullopt;
  }
  static const std::pair<const char*, Token::Op> kOps[] = {
      {"}", Token::kWhole}, {"/.}", Token::kBaseNoExtension}, {"//}", Token::kDir},
      {"/}", Token::kBase}, {".}", Token::kNoExtension},
  };
  for (const auto& [suffix, op] : kOps) {
    const std::string s(suffix);
    if (text.compare(i, s.size(), s) == 0) {
      t.op = op;
      t.length = i + s.size() - at;
      return t;
    }
  }
  return std::nullopt;
}

std::string Apply(Token::Op op, const std::string& v) {
  switch (op) {
    case Token::kNoExtension:
      return RemoveExtension(v);
    case Token::kBase:
      return Basename(v);
    case Token::kDir:
      return Dirname(v);
    case Token::kBaseNoExtension:
      return RemoveExtension(Basename(v));
    case Token::kWhole:
    case Token::kSeq:
    case Token::kSlot:
      break;
  }
  return v;
}

// The values a token stands for (several for {} with several sources).
std::vector<std::string> Values(const Token& t, const std::vector<std::string>& args, size_t seq) {
  if (t.op == Token::kSeq) return {std::to_string(seq)};
  if (t.op == Token::kSlot)
    throw UsageError(
        "{%} (the job slot) is known only when a task runs: use $ORQ_SLOT in a shell command");
  const long n = static_cast<long>(args.size());
  if (t.source > n || -t.source > n)
    throw UsageError(
        "{" + std::to_string(t.source) + "} names input source " +
        (t.source > 0 ? std::to_string(t.source) : std::to_string(-t.source) + " from the last") +
        ", but there " + (n == 1 ? "is 1" : "are " + std::to_string(n)));
  if (t.source > 0) return {Apply(t.op, args[static_cast<size_t>(t.source - 1)])};
  if (t.source < 0) return {Apply(t.op, args[static_cast<size_t>(n + t.source)])};
  std::vector<std::string> out;
  for (const auto& a : args) out.push_back(Apply(t.op, a));
  return out;
}

std::string Join(const std::vector<std::string>& values, bool quote) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ' ';
    out += quote ? ShellQuote(values[i]) : values[i];
  }
  return out;
}

// One word of the command with its replacement strings put in (each value quoted when `quote`):
// several words when a string stands for several values ({} with several sources), as the shell
// splits GNU parallel's line: text before it goes with the first value, text after it with the
// last (`x{}y` with a, b gives xa, by). A word of a shell line is these joined by spaces (x'a'
// 'b'y). `used` is set when there was a replacement string.
std::vector<std::string> Substitute(const std::string& word, const std::vector<std::string>& args,
                                    size_t seq, bool quote, bool& used) {
  std::vector<std::string> words(1);
  for (size_t i = 0; i < word.size();) {
    std::optional<Token> t;
    if (word[i] == '{') t = TokenAt(word, i);
    if (!t) {
      words.back() += word[i++];
      continue;
    }
    used = true;
    std::vector<std::string> values = Values(*t, args, seq);
    for (size_t v = 0; v < values.size(); ++v) {
      if (v > 0) words.emplace_back();
      words.back() += quote ? ShellQuote(values[v]) : values[v];
    }
    i += t->length;
  }
  return words;
}

// Perl's File::Basename: s{(.)/*\z}{$1}s, and fileparse's split at the last '/'.
void StripTrailingSlashes(std::string& p) {
  size_t end = p.size();
  while (end > 1 && p[end - 1] == '/') --end;
  p.resize(end);
}
std::pair<std::string, std::string> FileParse(const std::string& p) {
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return {"./", p};
  return {p.substr(0, slash + 1), p.substr(slash + 1)};
}

}  // namespace

std::string RemoveExtension(const std::string& path) {  // s:\.[^/.]*$::
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos || path.find('/', dot) != std::string::npos) return path;
  return path.substr(0, dot);
}

std::string Basename(const std::string& path) {  // s:.*/::
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Dirname(const std::string& path) {  // File::Basename::dirname, Unix
  auto [dir, base] = FileParse(path);
  StripTrailingSlashes(dir);
  if (base.empty()) {
    std::tie(dir, base) = FileParse(dir);
    StripTrailingSlashes(dir);
  }
  return dir;
}

std::string ShellQuote(const std::string& word) {
  bool plain = !word.empty();
  for (char c : word) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '+' || c == '.' || c == '/' || c == '-';
    if (!ok) plain = false;
  }
  if (plain) return word;
  std::string out = "'";
  for (char c : word) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  out += "'";
  // As GNU parallel: no empty '' left at either end of a value that begins or ends with a quote.
  if (!word.empty() && out.compare(0, 2, "''") == 0) out.erase(0, 2);
  if (!word.empty() && out.size() > 2 && out.compare(out.size() - 2, 2, "''") == 0)
    out.erase(out.size() - 2);
  return out;
}

std::string ShellLine(const std::vector<std::string>& argv) {
  if (const std::string* line = ShellCommand(argv)) return *line;
  std::vector<std::string> quoted;
  for (const auto& a : argv) quoted.push_back(ShellQuote(a));
  return Join(quoted, false);
}

namespace {

// The words a shell takes as a keyword, or as a builtin that changes the shell itself or its
// flow: no program does what they do. (echo, printf, true, false, test, [, kill and pwd have
// programs that print and exit as the builtins do, so they keep the exec path.)
bool ShellOnly(const std::string& word) {
  static const std::set<std::string, std::less<>> kWords = {
      "!",       "[[",       "]]",        "{",        "}",       "case",    "coproc",   "do",
      "done",    "elif",     "else",      "esac",     "fi",      "for",     "function", "if",
      "in",      "select",   "then",      "time",     "until",   "while",   ".",        ":",
      "alias",   "bg",       "bind",      "break",    "builtin", "caller",  "cd",       "command",
      "compgen", "complete", "compopt",   "continue", "declare", "dirs",    "disown",   "enable",
      "eval",    "exec",     "exit",      "export",   "fc",      "fg",      "getopts",  "hash",
      "help",    "history",  "jobs",      "let",      "local",   "logout",  "mapfile",  "popd",
      "pushd",   "read",     "readarray", "readonly", "return",  "set",     "shift",    "shopt",
      "source",  "suspend",  "times",     "trap",     "type",    "typeset", "ulimit",   "umask",
      "unalias", "unset",    "wait"};
  return kWords.count(word) != 0;
}

// A word (its replacement strings taken out: their values are quoted) that a shell would read
// otherwise than as one literal argument.
bool ShellWord(const std::string& word, bool first) {
  std::string text;
  for (size_t i = 0; i < word.size();) {
    if (auto t = word[i] == '{' ? TokenAt(word, i) : std::nullopt) {
      text += 'x';  // a value, quoted: a plain word to the shell
      i += t->length;
    } else {
      text += word[i++];
    }
  }
  if (text.find_first_of(" \t\n|&;<>()$`\\\"'*?[]") != std::string::npos) return true;
  if (!text.empty() && (text[0] == '~' || text[0] == '#')) return true;  // home, a comment
  if (const size_t open = text.find('{'); open != std::string::npos) {   // bash's {a,b} {1..3}
    const size_t close = text.find('}', open);
    if (close != std::string::npos) {
      const std::string inside = text.substr(open + 1, close - open - 1);
      if (inside.find(',') != std::string::npos || inside.find("..") != std::string::npos)
        return true;
    }
  }
  if (first) {  // NAME=value before the command: an assignment
    const size_t eq = text.find('=');
    if (eq != std::string::npos && eq > 0 &&
        std::all_of(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(eq),
                    [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }))
      return true;
  }
  return false;
}

// A word of several words' command that holds a space is one argument, quoted in a shell line
// (`sh -c 'script' {}` keeps its script); GNU parallel would split it.
bool OneArgument(const std::string& word) {
  return word.find_first_of(" \t\n") != std::string::npos;
}

}  // namespace

bool NeedsShell(const std::vector<std::string>& command) {
  if (command.empty()) return false;
  if (command.size() == 1) return ShellWord(command[0], /*first=*/false) || ShellOnly(command[0]);
  if (ShellOnly(command[0])) return true;
  for (size_t i = 0; i < command.size(); ++i) {
    if (!OneArgument(command[i]) && ShellWord(command[i], i == 0)) return true;
  }
  return false;
}

std::string JoinedLine(const std::vector<std::string>& command) {
  if (command.size() == 1) return command[0];
  std::string line;
  for (const std::string& word : command)
    line += (line.empty() ? "" : " ") + (OneArgument(word) ? ShellQuote(word) : word);
  return line;
}

CommandTemplate ParseCommandTemplate(const std::vector<std::string>& words, const ReadLines& read) {
  CommandTemplate t;
  enum { kCommand, kArgs, kFiles } mode = kCommand;
  std::string separator;
  size_t perl = std::string::npos;  // the command word where a {= began
  for (const std::string& w : words) {
    if (w == ":::" || w == ":::+" || w == "::::" || w == "::::+") {
      if (mode == kArgs && t.sources.back().values.empty())
        throw UsageError(separator + " needs at least one argument after it");
      if (mode == kFiles && t.sources.back().origin.empty())
        throw UsageError(separator + " needs at least one file after it");
      separator = w;
      // (A linked source with none before it is the first source, as GNU parallel takes it.)
      const bool linked = w.back() == '+' && !t.sources.empty();
      if (w.rfind("::::", 0) == 0) {
        mode = kFiles;
        t.sources.push_back({{}, linked, ""});  // filled by the files that follow
      } else {
        mode = kArgs;
        t.sources.push_back(
            {{}, linked, "::: (input source " + std::to_string(t.sources.size() + 1) + ")"});
      }
      continue;
    }
    switch (mode) {
      case kCommand: {
        // {= perl expression =}, in one word or over several (as the tutorial writes it).
        const size_t open = w.find("{=");
        if (open != std::string::npos) perl = t.command.size();
        if (perl != std::string::npos &&
            w.find("=}", perl == t.command.size() ? open + 2 : 0) != std::string::npos) {
          std::vector<std::string> said(t.command.begin() + static_cast<std::ptrdiff_t>(perl),
                                        t.command.end());
          said.push_back(w);
          throw UsageError("'" + Join(said, false) +
                           "': {= perl expression =} is not supported; compute the value in a "
                           "shell command instead, e.g. 'x=$(echo {} | tr a-z A-Z); cmd \"$x\"'");
        }
        t.command.push_back(w);
        break;
      }
      case kArgs:
        t.sources.back().values.push_back(w);
        break;
      case kFiles: {
        InputSource* source = &t.sources.back();
        if (!source->origin.empty()) {  // each further file is a source of its own,
          t.sources.push_back({{}, separator == "::::+", ""});  // linked after ::::+
          source = &t.sources.back();
        }
        source->origin = w;
        source->values = read(w);
        break;
      }
    }
  }
  if (mode == kArgs && t.sources.back().values.empty())
    throw UsageError(separator + " needs at least one argument after it");
  if (mode == kFiles && t.sources.back().origin.empty())
    throw UsageError(separator + " needs at least one file after it");
  return t;
}

std::vector<std::vector<std::string>> CombineSources(const std::vector<InputSource>& sources,
                                                     size_t limit) {
  // Groups of linked sources: each group is one list of tuples, as long as its shortest source.
  struct Group {
    size_t first, count, length;
  };
  std::vector<Group> groups;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].linked && !groups.empty()) {
      Group& g = groups.back();
      ++g.count;
      g.length = std::min(g.length, sources[i].values.size());
    } else {
      groups.push_back({i, 1, sources[i].values.size()});
    }
  }
  size_t total = groups.empty() ? 0 : 1;
  for (const Group& g : groups) {
    if (g.length != 0 && total > limit / g.length)
      throw UsageError("the input sources make more than " + std::to_string(limit) +
                       " tasks; a job may hold at most " + std::to_string(limit));
    total *= g.length;
  }
  std::vector<std::vector<std::string>> tuples;
  tuples.reserve(total);
  std::vector<size_t> at(groups.size(), 0);  // an odometer, the last group fastest
  for (size_t n = 0; n < total; ++n) {
    std::vector<std::string>& tuple = tuples.emplace_back();
    tuple.reserve(sources.size());
    for (size_t g = 0; g < groups.size(); ++g) {
      for (size_t s = groups[g].first; s < groups[g].first + groups[g].count; ++s)
        tuple.push_back(sources[s].values[at[g]]);
    }
    for (size_t g = groups.size(); g-- > 0;) {
      if (++at[g] < groups[g].length) break;
      at[g] = 0;
    }
  }
  return tuples;
}

std::vector<std::string> ExpandCommand(const std::vector<std::string>& command,
                                       const std::vector<std::string>& args, size_t seq,
                                       bool append) {
  return ExpandCommand(command, NeedsShell(command), args, seq, append);
}

std::vector<std::string> ExpandCommand(const std::vector<std::string>& command, bool shell,
                                       const std::vector<std::string>& args, size_t seq,
                                       bool append) {
  if (command.empty()) return {"/bin/sh", "-c", Join(args, false)};  // each argument a command
  bool used = false;
  if (shell) {  // as GNU parallel: the words joined by spaces, values quoted
    std::string line;
    for (const std::string& word : command) {
      if (!line.empty()) line += ' ';
      if (command.size() > 1 && OneArgument(word)) {  // one argument: its values put in, quoted
        line += ShellQuote(Join(Substitute(word, args, seq, /*quote=*/false, used), false));
        continue;
      }
      line += Join(Substitute(word, args, seq, /*quote=*/true, used), false);
    }
    if (!used && append && !args.empty()) line += " " + Join(args, true);
    return {"/bin/sh", "-c", line};
  }
  std::vector<std::string> argv;
  for (const std::string& word : command) {
    // A word that is one replacement string alone gives one argument per value: `{}` with two
    // sources is two arguments, as the shell would split GNU parallel's line.
    if (auto t = word.size() > 1 && word[0] == '{' ? TokenAt(word, 0) : std::nullopt;
        t && t->length == word.size()) {
      used = true;
      for (auto& v : Values(*t, args, seq)) argv.push_back(std::move(v));
      continue;
    }
    for (std::string& w : Substitute(word, args, seq, /*quote=*/false, used))
      argv.push_back(std::move(w));
  }
  if (!used && append) argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace orq
