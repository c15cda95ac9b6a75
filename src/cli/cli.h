// The command line: `rota COMMAND ...`. main() calls run_cli and returns its exit code.
#pragma once

namespace rota {

// Exit codes: 0 ok; 1 what was asked failed; 2 usage error; 3 daemon or store unreachable.
int run_cli(int argc, char** argv);

}  // namespace rota
