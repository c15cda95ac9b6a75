#include "cli/cli.h"

int main(int argc, char** argv) { return rota::run_cli(argc, argv); }
