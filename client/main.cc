#include <iostream>

#include "client/cli.h"

int main(int argc, char** argv) { return graft::client::RunCli(argc, argv, std::cout, std::cerr); }
