// lowbit: quantize large language models and run them fast on CPUs and NVIDIA GPUs.
#include <cstdio>
#include <map>

#include "commands.h"
#include "lowbit/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "lowbit: quantize LLM weights and activations (int8, int4, float8, fp6, uintx, ...) the way torchao\n"
      "does, bit for bit, and measure what it costs and gains.\n"};
  app.name("lowbit");
  app.require_subcommand(1);
  app.set_version_flag("--version", "lowbit 0.1.0");
  std::map<CLI::App*, lowbit::cli::Action> actions;
  auto add = [&](lowbit::cli::Action (*reg)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    lowbit::cli::Action a = reg(app);
    actions[app.get_subcommands({})[before]] = std::move(a);
  };
  add(lowbit::cli::register_demo);
  add(lowbit::cli::register_generate);
  add(lowbit::cli::register_ppl);
  add(lowbit::cli::register_quantize);
  add(lowbit::cli::register_bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (auto* sub : app.get_subcommands())
      if (auto it = actions.find(sub); it != actions.end()) return it->second();
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
