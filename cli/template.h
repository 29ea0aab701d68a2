// Commands without JSON: GNU parallel's input sources and replacement strings, as GNU parallel
// defines them (its man page, "--dry-run" output), for `orq run` and `orq submit`:
//
//   orq run -- gzip -9 {} ::: a.txt b.txt          two tasks: gzip -9 a.txt, gzip -9 b.txt
//   orq run -- convert {} {.}.png ::: *.jpg        {.}: without its extension
//   orq run 'sort {} | uniq -c > {/.}.count' :::: files.txt
//
// Sources: `::: A B C` (arguments), `:::: FILE...` (a file's lines each; '-' = stdin); several make
// a cross product, the last varying fastest; `:::+` / `::::+` link a source to the one before it
// (the n-th with the n-th; the shortest decides how many). Replacement strings: {} {.} {/} {//}
// {/.} {#} and {N} {N.} {N/} {N//} {N/.} for source N alone ({-N}...: the N-th from the last). A
// command with none of them gets the arguments appended; {= perl =} is refused.
//
// How a task runs: a command of several words runs as those words (argv, no shell: a value with
// spaces stays one argument). A command of one word with spaces or shell syntax in it
// ('gzip {} && rm {}') runs under /bin/sh -c with each value quoted as GNU parallel quotes it, so
// its --dry-run lines are GNU parallel's. With no command at all, each argument is a shell command.
//
// Pure: files are read through the `read` callback; errors are UsageError sentences.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace orq {

struct InputSource {
  std::vector<std::string> values;
  bool linked = false;  // :::+ or ::::+: paired with the source before it
  std::string origin;   // "::: (source 1)" or the file's name, for sentences
};

struct CommandTemplate {
  std::vector<std::string> command;  // the words before the first separator
  std::vector<InputSource> sources;  // empty: the command runs once, as it is
};

// Reads a `::::` file's lines ("-" = stdin); throws UsageError when it cannot.
using ReadLines = std::function<std::vector<std::string>(const std::string& file)>;

// Splits the words after `--` at ::: / :::: / :::+ / ::::+.
CommandTemplate ParseCommandTemplate(const std::vector<std::string>& words, const ReadLines& read);

// The argument tuples, one per task, in GNU parallel's order. Throws UsageError when there would
// be more than `limit`.
std::vector<std::vector<std::string>> CombineSources(const std::vector<InputSource>& sources,
                                                     size_t limit);

// One task's argv: the template with `args` (one value per source) put in; `seq` is {#} (from 1).
// `append` says whether the arguments go at the end when no replacement string is used.
// Throws UsageError for {N} beyond the sources, or {%} (known only when the task runs).
std::vector<std::string> ExpandCommand(const std::vector<std::string>& command,
                                       const std::vector<std::string>& args, size_t seq,
                                       bool append = true);
// The same with NeedsShell(command) known (a job's tasks share it).
std::vector<std::string> ExpandCommand(const std::vector<std::string>& command, bool shell,
                                       const std::vector<std::string>& args, size_t seq,
                                       bool append);

// GNU parallel runs every command through a shell; orq runs one through /bin/sh -c only when a
// shell would read it otherwise than as its words: a word with shell syntax (quotes, |, &&, ;,
// >, $, globs, a leading ~ or #, bash's {a,b}), an assignment before it, or a keyword or builtin
// of the shell's own (exit, cd, export, if, ...) as its first word. The rest is exec'ed (GNU
// make's fast path): the same argv, without a shell's start. Replacement strings do not count:
// their values are quoted. A lone word is a shell line as it is; among several words, one that
// holds a space is one argument (quoted in the line; parallel would split it), so
// `sh -c 'script' {}` keeps its script.
bool NeedsShell(const std::vector<std::string>& command);
// The shell line of such a command: its words joined by spaces, as GNU parallel joins them
// (a word with a space quoted).
std::string JoinedLine(const std::vector<std::string>& command);

// GNU parallel's quoting: as it is when only [A-Za-z0-9_+./-], else in single quotes ('' empty).
std::string ShellQuote(const std::string& word);
// An argv as one line a shell would run the same way (for --dry-run): `sh -c LINE` shows LINE.
std::string ShellLine(const std::vector<std::string>& argv);

// GNU parallel's path replacements on one value.
std::string RemoveExtension(const std::string& path);  // {.}
std::string Basename(const std::string& path);         // {/}
std::string Dirname(const std::string& path);          // {//}

}  // namespace orq
