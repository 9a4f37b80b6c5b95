// Each subcommand registers itself on the root app; main() runs whichever was chosen.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace lowbit::cli {

// A subcommand's body: runs after parsing, returns the process exit code.
using Action = std::function<int()>;

Action register_demo(CLI::App& app);
Action register_generate(CLI::App& app);
Action register_ppl(CLI::App& app);
Action register_quantize(CLI::App& app);
Action register_bench(CLI::App& app);

}  // namespace lowbit::cli
