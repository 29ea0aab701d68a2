// orq: asyncio.gather for processes. One executable, one subcommand per verb (cli/verbs.h).
#include "cli/verbs.h"

int main(int argc, char** argv) { return orq::Main(argc, argv); }
